-- reports.sql: reporting queries for the library schema in schema.sql.

-- 1. Books currently on loan, with the borrower and days overdue
--    relative to a fixed report date.
SELECT b.title,
       m.full_name                                   AS borrower,
       l.due_on,
       MAX(0, CAST(julianday('2024-05-01') - julianday(l.due_on) AS INTEGER)) AS days_overdue
FROM loans l
JOIN books b   ON b.book_id = l.book_id
JOIN members m ON m.member_id = l.member_id
WHERE l.returned_on IS NULL
ORDER BY days_overdue DESC, b.title;

-- 2. Available copies per book (total copies minus open loans).
SELECT b.title,
       b.copies,
       b.copies - COUNT(l.loan_id) AS available
FROM books b
LEFT JOIN loans l
       ON l.book_id = b.book_id AND l.returned_on IS NULL
GROUP BY b.book_id, b.title, b.copies
ORDER BY available, b.title;

-- 3. Loans per author, ranked with a window function.
SELECT a.full_name,
       COUNT(l.loan_id)                              AS total_loans,
       RANK() OVER (ORDER BY COUNT(l.loan_id) DESC)  AS popularity_rank
FROM authors a
LEFT JOIN books b ON b.author_id = a.author_id
LEFT JOIN loans l ON l.book_id = b.book_id
GROUP BY a.author_id, a.full_name;

-- 4. Each member's most recent loan, using ROW_NUMBER.
WITH ranked AS (
    SELECT l.*,
           ROW_NUMBER() OVER (PARTITION BY l.member_id ORDER BY l.loaned_on DESC) AS rn
    FROM loans l
)
SELECT m.full_name, b.title, r.loaned_on
FROM ranked r
JOIN members m ON m.member_id = r.member_id
JOIN books b   ON b.book_id = r.book_id
WHERE r.rn = 1
ORDER BY m.full_name;
