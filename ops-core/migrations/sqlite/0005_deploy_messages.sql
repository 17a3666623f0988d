-- Where a deploy's own Discord message is (set by /deploy once it is posted), so that a deploy
-- interrupted by a restart can have that message edited to say so. Snowflakes are text: a u64
-- does not fit BIGINT.
ALTER TABLE deploys ADD COLUMN channel_id TEXT;
ALTER TABLE deploys ADD COLUMN message_id TEXT;
