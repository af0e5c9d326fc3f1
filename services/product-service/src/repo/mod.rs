//! Tables and the queries over them. Every function takes any connection, so use cases choose
//! what runs inside one transaction.

pub mod entities;
pub mod products;
pub mod reservations;
