-- The initial grade book of the original design, loaded once into a new database.
INSERT INTO students (id, first_name, last_name) VALUES
    (1, 'Nick', 'Carter'),
    (2, 'Roberto', 'Baggio'),
    (3, 'Emma', 'Stone'),
    (4, 'zhangsan', 'san'),
    (5, 'xiaoqiao', 'qiao');

INSERT INTO grades (student_id, title, kind, score) VALUES
    (1, 'Quiz 1', 'Quiz', 85), (1, 'Final Exam', 'Exam', 94), (1, 'Quiz 2', 'Quiz', 82),
    (2, 'Quiz 1', 'Quiz', 100), (2, 'Final Exam', 'Exam', 100), (2, 'Quiz 2', 'Quiz', 81),
    (3, 'Quiz 1', 'Quiz', 67), (3, 'Final Exam', 'Exam', 0), (3, 'Quiz 2', 'Quiz', 75),
    (4, 'Quiz 1', 'Quiz', 44), (4, 'Final Exam', 'Exam', 0), (4, 'Quiz 2', 'Quiz', 66),
    (5, 'Quiz 1', 'Quiz', 23), (5, 'Final Exam', 'Exam', 0), (5, 'Quiz 2', 'Quiz', 44);

