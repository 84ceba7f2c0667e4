CREATE TABLE sessions (
    id          uuid PRIMARY KEY,
    user_id     text NOT NULL,
    title       text NOT NULL,
    description text,
    status      text NOT NULL CHECK (status IN ('active', 'archived')),
    cycle_ids   uuid[] NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);
CREATE INDEX sessions_user_idx ON sessions (user_id, created_at, id);

CREATE TABLE cycles (
    id              uuid PRIMARY KEY,
    session_id      uuid NOT NULL REFERENCES sessions (id),
    parent_cycle_id uuid REFERENCES cycles (id),
    branch_point    text,
    branch_label    text,
    status          text NOT NULL CHECK (status IN ('active', 'completed', 'archived')),
    current_step    text NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX cycles_session_idx ON cycles (session_id, created_at, id);

-- output is json (not jsonb) so it comes back byte for byte.
CREATE TABLE components (
    id              uuid PRIMARY KEY,
    cycle_id        uuid NOT NULL REFERENCES cycles (id) ON DELETE CASCADE,
    position        int NOT NULL,
    component_type  text NOT NULL,
    status          text NOT NULL,
    output          json,
    revision_reason text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    UNIQUE (cycle_id, component_type)
);

CREATE TABLE conversations (
    id             uuid PRIMARY KEY,
    component_id   uuid NOT NULL UNIQUE REFERENCES components (id) ON DELETE CASCADE,
    cycle_id       uuid NOT NULL REFERENCES cycles (id) ON DELETE CASCADE,
    session_id     uuid NOT NULL REFERENCES sessions (id),
    component_type text NOT NULL,
    state          text NOT NULL,
    phase          text NOT NULL,
    system_prompt  text NOT NULL,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);
CREATE INDEX conversations_session_idx ON conversations (session_id);

CREATE TABLE messages (
    id              uuid PRIMARY KEY,
    conversation_id uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq             int NOT NULL,
    role            text NOT NULL CHECK (role IN ('user', 'assistant')),
    content         text NOT NULL CHECK (char_length(content) BETWEEN 1 AND 10000),
    created_at      timestamptz NOT NULL,
    UNIQUE (conversation_id, seq)
);
