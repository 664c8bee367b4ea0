-- How far each user has read each conversation: the highest seq a `read`
-- frame named (it only moves forward), for unread counts on every device.
CREATE TABLE read_positions (
    user_id      TEXT NOT NULL,
    conversation TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    PRIMARY KEY (user_id, conversation)
);
