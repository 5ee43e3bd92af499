//! One credit to a team's prepaid balance: a top-up or an adjustment (signed), with who made it
//! and why. Inserted only; never changed or deleted.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "balance_entries")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub team_id: String,
    /// `top_up` | `adjustment`.
    pub kind: String,
    pub amount_micros: i64,
    pub actor_type: String,
    pub actor_id: String,
    pub reason: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
