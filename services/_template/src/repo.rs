//! The template service's queries, over its one table.

use chrono::Utc;
use sea_orm::{ActiveValue, ConnectionTrait, DbErr, EntityTrait};
use uuid::Uuid;

/// The `items` table.
pub mod item {
    use sea_orm::entity::prelude::*;

    /// One item.
    #[sea_orm::model]
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "items")]
    pub struct Model {
        /// Its id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// The user who created it.
        pub owner: Uuid,
        /// Its name, as validated by the API.
        pub name: String,
        /// When it was created.
        pub created_at: DateTimeUtc,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// Stores a new item of `owner` called `name`.
pub async fn create<C: ConnectionTrait>(
    conn: &C,
    owner: Uuid,
    name: &str,
) -> Result<item::Model, DbErr> {
    let row = item::ActiveModel {
        id: ActiveValue::Set(Uuid::new_v4()),
        owner: ActiveValue::Set(owner),
        name: ActiveValue::Set(name.to_owned()),
        created_at: ActiveValue::Set(Utc::now()),
    };
    item::Entity::insert(row).exec_with_returning(conn).await
}

/// The item `id`, if there is one.
pub async fn find<C: ConnectionTrait>(conn: &C, id: Uuid) -> Result<Option<item::Model>, DbErr> {
    item::Entity::find_by_id(id).one(conn).await
}
