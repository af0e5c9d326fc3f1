//! notification-service: email, SMS, push and in-app notifications, driven by the platform's
//! events and each user's preferences. (Being built: the delivery channels come first.)
#![forbid(unsafe_code)]

pub mod address;
pub mod channels;
