-- Per-user push state. `state` is the frequency policy's PushState as JSON (null until the
-- scheduler first plans for the user); `version` guards read-modify-write from feedback;
-- claimed_until/claim_token are a scheduler replica's lease on the row.
create table push_state (
    user_id       text primary key,
    version       bigint not null default 0,
    next_due_at   timestamptz not null,
    claimed_until timestamptz,
    claim_token   uuid,
    state         jsonb,
    updated_at    timestamptz not null
);
-- scheduler: "users due now", oldest first
create index push_state_by_next_due on push_state (next_due_at);

-- The outbox. One push per user and send slot: two replicas can never both plan one slot.
create table pushes (
    push_id      uuid primary key,
    user_id      text not null,
    item_id      text not null,
    send_at      timestamptz not null,
    expires_at   timestamptz not null,
    score        double precision not null,
    reasons      jsonb not null,
    -- planned -> leased -> delivered | failed; planned/leased -> expired | cancelled
    status       text not null,
    leased_until timestamptz,
    created_at   timestamptz not null,
    constraint pushes_one_per_user_slot unique (user_id, send_at)
);
-- gateway: "pushes due now" among the open ones
create index pushes_open_by_send_at on pushes (send_at) where status in ('planned', 'leased');
-- push-plan and erasure: a user's pushes
create index pushes_by_user on pushes (user_id, send_at);
-- global rate limit: pushes planned in the last minute
create index pushes_by_created_at on pushes (created_at);

-- Feedback is idempotent per (push, kind): a repeat is a no-op.
create table feedback (
    push_id     uuid not null,
    kind        text not null,
    ts          timestamptz not null,
    received_at timestamptz not null,
    primary key (push_id, kind)
);

-- Every scheduler decision (send or skip, and why) with its inputs.
create table decisions (
    id         bigint generated always as identity primary key,
    user_id    text not null,
    decided_at timestamptz not null,
    decision   jsonb not null
);
create index decisions_by_user on decisions (user_id, decided_at);
