-- Learned models, as data: every training that produced a model leaves a row, deployed or
-- not, so an operator can compare versions and roll back. `params` is the model's JSON.
create table models (
    version      bigint generated always as identity primary key,
    kind         text not null,
    created_at   timestamptz not null,
    window_from  timestamptz not null,
    window_to    timestamptz not null,
    -- set when the model was (last) made the one in force; the latest wins unless pinned
    deployed_at  timestamptz,
    metrics      jsonb not null,
    params       text not null
);
-- "the model in force": the latest deployment of a kind
create index models_by_kind_deployed on models (kind, deployed_at);

-- An operator's pin: while set, this version is in force whatever is trained later.
create table model_pins (
    kind    text primary key,
    version bigint not null references models (version)
);

-- Named leases among replicas (the trainer: one replica at a time).
create table leases (
    name   text primary key,
    holder uuid not null,
    until  timestamptz not null
);
