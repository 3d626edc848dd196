-- Learned models, as data (see the PostgreSQL migration). Times in microseconds.
create table models (
    version      integer primary key autoincrement,
    kind         text not null,
    created_at   integer not null,
    window_from  integer not null,
    window_to    integer not null,
    deployed_at  integer,
    metrics      text not null,
    params       text not null
);
create index models_by_kind_deployed on models (kind, deployed_at);

create table model_pins (
    kind    text primary key,
    version integer not null references models (version)
);

create table leases (
    name   text primary key,
    holder text not null,
    until  integer not null
);
