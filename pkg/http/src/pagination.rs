//! `?page=&per_page=` in, `{items, page, per_page, total}` out: the one list contract.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::extract::{FieldErrors, Query};
use crate::problem::Problem;

/// Items per page when the client does not say.
pub const DEFAULT_PER_PAGE: u64 = 20;
/// Larger requests are capped to this, so one call can never read a whole table.
pub const MAX_PER_PAGE: u64 = 100;

/// The raw query parameters, as documented in OpenAPI.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1-based page number (default 1).
    #[param(minimum = 1)]
    pub page: Option<i64>,
    /// Items per page (default 20; more than 100 is read as 100).
    #[param(minimum = 1)]
    pub per_page: Option<i64>,
}

/// A validated page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    page: u64,
    per_page: u64,
}

impl PageRequest {
    /// A 1-based `page` of `per_page` items, `per_page` capped to [`MAX_PER_PAGE`]. Either
    /// being 0 is a 422 naming the field.
    pub fn new(page: u64, per_page: u64) -> Result<Self, Problem> {
        let mut errors = FieldErrors::new();
        if page == 0 {
            errors.add("page", "must be at least 1");
        }
        if per_page == 0 {
            errors.add("per_page", "must be at least 1");
        }
        errors.finish()?;
        Ok(Self {
            page,
            per_page: per_page.min(MAX_PER_PAGE),
        })
    }

    /// The 1-based page number, at least 1.
    pub fn page(&self) -> u64 {
        self.page
    }

    /// Items per page, 1 to [`MAX_PER_PAGE`].
    pub fn per_page(&self) -> u64 {
        self.per_page
    }

    /// Rows to skip; past `i64::MAX` (what databases take) it stays there: such a page is
    /// empty, not an error.
    pub fn offset(&self) -> u64 {
        (self.page - 1)
            .saturating_mul(self.per_page)
            .min(i64::MAX.unsigned_abs())
    }

    /// Wraps one page of results.
    pub fn into_page<T>(self, items: Vec<T>, total: u64) -> Page<T> {
        Page {
            items,
            page: self.page,
            per_page: self.per_page,
            total,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for PageRequest {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(query) = Query::<PageQuery>::from_request_parts(parts, state).await?;
        // Signed 64-bit, as documented (`int64`): below 1 is refused by `new` as 0 is.
        let positive = |n: i64| u64::try_from(n).unwrap_or(0);
        PageRequest::new(
            query.page.map_or(1, positive),
            query.per_page.map_or(DEFAULT_PER_PAGE, positive),
        )
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    /// This page's items, at most `per_page` of them.
    pub items: Vec<T>,
    /// The 1-based page number returned.
    pub page: u64,
    /// The page size used (after capping).
    pub per_page: u64,
    /// Items in the whole list.
    pub total: u64,
}

impl<T> Page<T> {
    /// The same page with each item converted (rows to their API view).
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            page: self.page,
            per_page: self.per_page,
            total: self.total,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_page_is_capped_and_offset_computed() {
        let request = PageRequest::new(3, 1000).unwrap();
        assert_eq!(request.per_page(), MAX_PER_PAGE);
        assert_eq!(request.offset(), 200);
        let far = PageRequest::new(u64::MAX, 100).unwrap();
        assert_eq!(far.offset(), i64::MAX.unsigned_abs());
    }

    #[test]
    fn zero_page_or_size_is_invalid() {
        let problem = PageRequest::new(0, 0).unwrap_err();
        assert_eq!(problem.status, 422);
        let errors = problem.errors.unwrap();
        assert!(errors.contains_key("page") && errors.contains_key("per_page"));
    }
}
