CREATE TABLE students (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    first_name TEXT NOT NULL,
    last_name  TEXT NOT NULL
);

CREATE TABLE grades (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    student_id INTEGER NOT NULL REFERENCES students (id) ON DELETE CASCADE,
    title      TEXT NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    kind       TEXT NOT NULL CHECK (kind IN ('Quiz', 'Test', 'Exam', 'Homework')),
    score      REAL NOT NULL CHECK (score >= 0 AND score <= 100)
);

-- Grades are listed per student in insertion order.
CREATE INDEX grades_by_student ON grades (student_id, id);
