-- See the PostgreSQL migration 0006_hardening. Times in microseconds.
create table user_changes (
    seq        integer primary key autoincrement,
    user_id    text not null,
    kind       text not null,
    changed_at integer not null
);
create index user_changes_by_changed_at on user_changes (changed_at);

alter table pushes add column fetched_at integer;

alter table users add column unsubscribed_at integer;
alter table users add column resubscribed_at integer;

create table push_budget (
    minute integer primary key,
    used   integer not null
);
