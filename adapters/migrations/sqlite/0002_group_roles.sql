-- Groups get an owner and admins, invitations, and history from the join.
-- Groups made before this were joinable by anyone; they become closed, and
-- their members keep the whole history (hidden_through 0).

ALTER TABLE chat_groups ADD COLUMN is_open BOOLEAN NOT NULL DEFAULT FALSE;
-- 'from_join' or 'all': what a member who joins later may read.
ALTER TABLE chat_groups ADD COLUMN history TEXT NOT NULL DEFAULT 'from_join';

-- 'owner', 'admin' or 'member'.
ALTER TABLE group_members ADD COLUMN role TEXT NOT NULL DEFAULT 'member';
-- The group's last seq when the member joined: they read the seqs above it.
ALTER TABLE group_members ADD COLUMN hidden_through INTEGER NOT NULL DEFAULT 0;
UPDATE group_members SET role = 'owner'
WHERE user_id = (SELECT created_by FROM chat_groups g WHERE g.id = group_members.group_id);

CREATE TABLE group_invites (
    group_id   TEXT NOT NULL REFERENCES chat_groups (id),
    user_id    TEXT NOT NULL,
    invited_by TEXT NOT NULL,
    invited_at INTEGER NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_invites_user ON group_invites (user_id);
