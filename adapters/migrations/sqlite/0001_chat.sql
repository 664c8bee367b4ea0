-- Chat storage for standalone mode (SQLite). The PostgreSQL schema of the
-- Kafka mode mirrors it: same uniqueness rules, same seq semantics.

-- One row per conversation; last_seq is the highest seq handed out, so the
-- next message gets last_seq + 1 (contiguous per conversation).
CREATE TABLE conversations (
    id       TEXT PRIMARY KEY NOT NULL,
    last_seq INTEGER NOT NULL,
    -- Participants of a direct conversation (NULL for groups), so a user's
    -- conversations can be listed without parsing ids in SQL.
    user_a   TEXT,
    user_b   TEXT
);
CREATE INDEX conversations_user_a ON conversations (user_a);
CREATE INDEX conversations_user_b ON conversations (user_b);

CREATE TABLE messages (
    msg_id        TEXT PRIMARY KEY NOT NULL,
    conversation  TEXT NOT NULL,
    seq           INTEGER NOT NULL,
    sender        TEXT NOT NULL,
    client_msg_id TEXT NOT NULL,
    body          TEXT NOT NULL,
    ts            INTEGER NOT NULL,
    -- A resent client_msg_id is stored once.
    UNIQUE (sender, client_msg_id),
    UNIQUE (conversation, seq)
);

CREATE TABLE chat_groups (
    id         TEXT PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE group_members (
    group_id  TEXT NOT NULL REFERENCES chat_groups (id),
    user_id   TEXT NOT NULL,
    joined_at INTEGER NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user ON group_members (user_id);
