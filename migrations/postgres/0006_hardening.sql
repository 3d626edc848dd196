-- What changed about a user, for other replicas' caches: every erase, settings change and
-- push-state change writes a row in the same transaction; each replica reads the rows since
-- its last refresh and drops (after an erase: scrubs) the user from its caches.
create table user_changes (
    seq        bigint generated always as identity primary key,
    user_id    text not null,
    -- erased | settings | push
    kind       text not null,
    changed_at timestamptz not null default now()
);
-- replicas read "changes since T" (with an overlap for late commits)
create index user_changes_by_changed_at on user_changes (changed_at);

-- When the gateway first leased a push: only fetched pushes can be ignored by the user.
alter table pushes add column fetched_at timestamptz;

-- The user's subscription as the policy sees it: an unsubscribe turns push_consent off and is
-- recorded; consent turned on again afterwards is an explicit resubscribe, recorded too.
alter table users add column unsubscribed_at timestamptz;
alter table users add column resubscribed_at timestamptz;

-- One push budget per minute for the whole service (every worker of every replica).
create table push_budget (
    minute bigint primary key,
    used   bigint not null
);
