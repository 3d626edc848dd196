-- Per-user push state (see the PostgreSQL migration for the meaning of each column).
-- Times are integer microseconds since the Unix epoch.
create table push_state (
    user_id       text primary key,
    version       integer not null default 0,
    next_due_at   integer not null,
    claimed_until integer,
    claim_token   text,
    state         text,
    updated_at    integer not null
);
create index push_state_by_next_due on push_state (next_due_at);

create table pushes (
    push_id      text primary key,
    user_id      text not null,
    item_id      text not null,
    send_at      integer not null,
    expires_at   integer not null,
    score        real not null,
    reasons      text not null,
    status       text not null,
    leased_until integer,
    created_at   integer not null,
    unique (user_id, send_at)
);
create index pushes_open_by_send_at on pushes (send_at) where status in ('planned', 'leased');
create index pushes_by_user on pushes (user_id, send_at);
create index pushes_by_created_at on pushes (created_at);

create table feedback (
    push_id     text not null,
    kind        text not null,
    ts          integer not null,
    received_at integer not null,
    primary key (push_id, kind)
);

create table decisions (
    id         integer primary key autoincrement,
    user_id    text not null,
    decided_at integer not null,
    decision   text not null
);
create index decisions_by_user on decisions (user_id, decided_at);
