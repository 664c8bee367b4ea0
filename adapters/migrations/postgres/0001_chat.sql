-- Chat storage for the Kafka mode (PostgreSQL). Same rules as the SQLite
-- schema of standalone mode: a resent client_msg_id is stored once, and seqs
-- are contiguous per conversation.

-- One row per conversation; last_seq is the highest seq handed out. Storage
-- consumers lock this row (SELECT ... FOR UPDATE) while they assign seqs, so
-- two of them never hand out the same seq.
CREATE TABLE conversations (
    id       TEXT PRIMARY KEY,
    last_seq BIGINT NOT NULL,
    -- Participants of a direct conversation (NULL for groups).
    user_a   TEXT,
    user_b   TEXT
);
CREATE INDEX conversations_user_a ON conversations (user_a);
CREATE INDEX conversations_user_b ON conversations (user_b);

CREATE TABLE messages (
    msg_id        TEXT PRIMARY KEY,
    conversation  TEXT NOT NULL,
    seq           BIGINT NOT NULL,
    sender        TEXT NOT NULL,
    client_msg_id TEXT NOT NULL,
    body          TEXT NOT NULL,
    ts            BIGINT NOT NULL,
    UNIQUE (sender, client_msg_id),
    UNIQUE (conversation, seq)
);

CREATE TABLE chat_groups (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE group_members (
    group_id  TEXT NOT NULL REFERENCES chat_groups (id),
    user_id   TEXT NOT NULL,
    joined_at BIGINT NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user ON group_members (user_id);
