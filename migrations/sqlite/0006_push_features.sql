-- See the PostgreSQL migration 0007_push_features.
alter table pushes add column features text;
