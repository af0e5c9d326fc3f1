//! Payments the fraud rules held for a person: listing them, approving (which charges the
//! card then), declining, voiding, and the reconciler's part: expiring the undecided ones and
//! finishing approvals whose process died before the providers answered.

use platform_events::catalogue::PaymentReviewDecided;
use platform_http::{Page, PageRequest};

use super::keys::ABANDONED_AFTER;
use super::{PaymentError, Payments};
use crate::domain::{CardToken, PaymentId, PaymentStatus, now};
use crate::repo::{self, PaymentRow};
use crate::view::{CorruptRow, PaymentView};

impl Payments {
    /// Payments waiting for a person, oldest first.
    pub async fn reviews(&self, page: PageRequest) -> Result<Page<PaymentView>, PaymentError> {
        let (rows, total) = repo::reviews(&self.db, page).await?;
        let items = rows
            .iter()
            .map(PaymentView::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(page.into_page(items, total))
    }

    /// Approves a payment the fraud rules held: it goes to the providers now (under its own
    /// id as the key, so a repeat after a crash charges once) and whatever they answer is its
    /// outcome. A payment the provider holds is the provider's to decide.
    pub async fn approve(&self, id: PaymentId) -> Result<PaymentView, PaymentError> {
        let txn = platform_db::begin_write(&self.db).await?;
        let mut row = repo::lock_payment(&txn, id)
            .await?
            .ok_or(PaymentError::NotFound)?;
        Self::held_by_us(&row)?;
        let token = row
            .retry_token
            .as_deref()
            .and_then(|t| CardToken::parse(t).ok())
            .ok_or(CorruptRow(row.id, "retry_token"))?;
        // Claimed before any provider call: a second approval, a decline or the expiry
        // now finds it pending; if this process dies here, the reconciler finishes it.
        row.status = PaymentStatus::Pending;
        row.updated_at = now();
        repo::save_payment(&txn, &row).await?;
        let decided = PaymentReviewDecided {
            payment: Self::facts(&row),
            decision: "approved".to_owned(),
            reason: "approved by an administrator".to_owned(),
        };
        self.emit(&txn, &decided).await?;
        txn.commit().await?;
        tracing::info!(payment_id = %id, "review approved; charging");
        let row = self.charge_held(row, token).await?;
        Ok(PaymentView::try_from(&row)?)
    }

    /// Sends an approved payment to the providers and records their answer.
    async fn charge_held(
        &self,
        mut row: PaymentRow,
        token: CardToken,
    ) -> Result<PaymentRow, PaymentError> {
        let request = Self::provider_request(&row, token.clone())?;
        let (provider, result) = self.providers.charge(&request).await;
        let txn = platform_db::begin_write(&self.db).await?;
        let current = repo::lock_payment(&txn, PaymentId::from_uuid(row.id))
            .await?
            .ok_or(PaymentError::NotFound)?;
        if current.status != PaymentStatus::Pending {
            // Settled meanwhile (a webhook): that is the answer.
            return Ok(current);
        }
        if let Some(provider) = provider {
            row.provider = provider.to_owned();
        }
        Self::record_answer(&mut row, result, &token);
        row.updated_at = now();
        repo::save_payment(&txn, &row).await?;
        self.announce(&txn, &row).await?;
        txn.commit().await?;
        if row.status == PaymentStatus::Captured {
            self.counters.money("captured", &row.currency, row.amount);
        }
        Ok(row)
    }

    /// Declines a held payment (`decision`: `declined` by a person or the checkout,
    /// `expired`): it fails without any provider having seen it, so nothing was charged.
    pub async fn decline(
        &self,
        id: PaymentId,
        decision: &str,
        reason: &str,
    ) -> Result<PaymentView, PaymentError> {
        let txn = platform_db::begin_write(&self.db).await?;
        let mut row = repo::lock_payment(&txn, id)
            .await?
            .ok_or(PaymentError::NotFound)?;
        Self::held_by_us(&row)?;
        row.status = PaymentStatus::Failed;
        row.failure_reason = Some(format!("not approved in review: {reason}"));
        row.retry_token = None;
        row.updated_at = now();
        repo::save_payment(&txn, &row).await?;
        self.announce(&txn, &row).await?;
        let decided = PaymentReviewDecided {
            payment: Self::facts(&row),
            decision: decision.to_owned(),
            reason: reason.to_owned(),
        };
        self.emit(&txn, &decided).await?;
        txn.commit().await?;
        tracing::info!(payment_id = %id, decision, "review decided");
        Ok(PaymentView::try_from(&row)?)
    }

    /// Ends a payment the checkout gave up on: a held review is declined; a failed or blocked
    /// payment is returned as it is. Anything else still open at a provider (pending,
    /// unknown, held by the provider) cannot be ended here: the caller asks again later.
    pub async fn void(&self, id: PaymentId, reason: &str) -> Result<PaymentView, PaymentError> {
        let row = repo::find_payment(&self.db, id)
            .await?
            .ok_or(PaymentError::NotFound)?;
        match row.status {
            PaymentStatus::RequiresReview if row.provider.is_empty() => {
                self.decline(id, "declined", reason).await
            }
            PaymentStatus::Failed | PaymentStatus::Blocked => Ok(PaymentView::try_from(&row)?),
            PaymentStatus::RequiresReview | PaymentStatus::Pending | PaymentStatus::Unknown => {
                Err(PaymentError::HeldByProvider)
            }
            _ => Err(PaymentError::NotRefundable(row.status.as_str())),
        }
    }

    /// Whether `row` is a review this service may decide.
    fn held_by_us(row: &PaymentRow) -> Result<(), PaymentError> {
        if row.status != PaymentStatus::RequiresReview {
            return Err(PaymentError::NotInReview(row.status));
        }
        if !row.provider.is_empty() {
            return Err(PaymentError::HeldByProvider);
        }
        Ok(())
    }

    /// Declines the reviews nobody decided within the review TTL.
    pub(super) async fn expire_reviews(&self) -> Result<(), PaymentError> {
        let before = now() - chrono::Duration::from_std(self.review_ttl).unwrap_or_default();
        for row in repo::expired_reviews(&self.db, before, 32).await? {
            let id = PaymentId::from_uuid(row.id);
            match self.decline(id, "expired", "not reviewed in time").await {
                Ok(_) | Err(PaymentError::NotInReview(_)) => {}
                Err(error) => tracing::warn!(payment_id = %id, %error, "cannot expire a review"),
            }
        }
        Ok(())
    }

    /// Charges approved payments whose process died before the providers answered (status
    /// `pending`, no provider yet, token kept): the providers get the payment id as the key,
    /// so one that had already charged answers with that charge.
    pub(super) async fn finish_approvals(&self) -> Result<(), PaymentError> {
        let before = now() - chrono::Duration::from_std(ABANDONED_AFTER).unwrap_or_default();
        for row in repo::stalled_approvals(&self.db, before, 32).await? {
            let Some(token) = row
                .retry_token
                .as_deref()
                .and_then(|t| CardToken::parse(t).ok())
            else {
                continue;
            };
            tracing::warn!(payment_id = %row.id, "finishing an approval left unfinished");
            if let Err(error) = self.charge_held(row.clone(), token).await {
                tracing::warn!(payment_id = %row.id, %error, "cannot finish an approval yet");
            }
        }
        Ok(())
    }
}
