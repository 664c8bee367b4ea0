-- Edits, recalls and deletions are rows of their own (they take a seq);
-- the message they name keeps its row with the amended body.

-- 'message', 'edit', 'recall' or 'delete'.
ALTER TABLE messages ADD COLUMN kind TEXT NOT NULL DEFAULT 'message';
-- For an amendment: the seq of the message it changes.
ALTER TABLE messages ADD COLUMN target_seq INTEGER;
-- For an amended message: the last amendment applied to it.
ALTER TABLE messages ADD COLUMN amended TEXT;
