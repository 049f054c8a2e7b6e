-- People who sign in: teachers, and students linked to their student record.
-- `version` moves on with every password change, so a session that recorded
-- it can tell it was revoked; a re-created account starts past any earlier
-- version (from the current time in microseconds).
CREATE TABLE accounts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT NOT NULL UNIQUE,
    role          TEXT NOT NULL CHECK (role IN ('teacher', 'student')),
    student_id    INTEGER REFERENCES students (id) ON DELETE CASCADE,
    password_hash TEXT NOT NULL,
    version       INTEGER NOT NULL,
    token_hash    TEXT,
    created_at    TEXT NOT NULL,
    CHECK ((role = 'student') = (student_id IS NOT NULL))
);
