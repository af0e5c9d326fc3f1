//! How use-case errors reach clients: every one becomes a problem document. Internal details
//! are logged here and never sent.

use platform_http::Problem;

use crate::service::NotifyError;
use crate::templates::TemplateError;

impl From<NotifyError> for Problem {
    fn from(error: NotifyError) -> Self {
        match error {
            NotifyError::NotFound => Problem::not_found("No such notification."),
            NotifyError::Template(TemplateError::Unknown(name)) => {
                Problem::invalid_field("template", format!("no template named {name:?}"))
            }
            NotifyError::Template(TemplateError::Render(reason)) => {
                Problem::invalid_field("data", format!("the template cannot be rendered: {reason}"))
            }
            NotifyError::Database(error) => {
                platform_service::database_problem("notification", &error)
            }
            error @ NotifyError::MalformedEvent { .. } => {
                tracing::error!(%error, "request failed");
                Problem::internal()
            }
        }
    }
}
