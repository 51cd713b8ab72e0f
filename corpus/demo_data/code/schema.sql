-- schema.sql: tables for a small library lending system.
-- Written for SQLite; also valid on PostgreSQL with minor type changes.

PRAGMA foreign_keys = ON;

CREATE TABLE authors (
    author_id   INTEGER PRIMARY KEY,
    full_name   TEXT    NOT NULL,
    birth_year  INTEGER CHECK (birth_year BETWEEN 1000 AND 2100)
);

CREATE TABLE books (
    book_id     INTEGER PRIMARY KEY,
    title       TEXT    NOT NULL,
    author_id   INTEGER NOT NULL REFERENCES authors(author_id),
    isbn        TEXT    UNIQUE,
    published   INTEGER,
    copies      INTEGER NOT NULL DEFAULT 1 CHECK (copies >= 0)
);

CREATE TABLE members (
    member_id   INTEGER PRIMARY KEY,
    email       TEXT    NOT NULL UNIQUE,
    full_name   TEXT    NOT NULL,
    joined_on   DATE    NOT NULL DEFAULT CURRENT_DATE
);

CREATE TABLE loans (
    loan_id     INTEGER PRIMARY KEY,
    book_id     INTEGER NOT NULL REFERENCES books(book_id),
    member_id   INTEGER NOT NULL REFERENCES members(member_id),
    loaned_on   DATE    NOT NULL,
    due_on      DATE    NOT NULL,
    returned_on DATE,
    CHECK (due_on >= loaned_on),
    CHECK (returned_on IS NULL OR returned_on >= loaned_on)
);

CREATE INDEX idx_books_author ON books(author_id);
CREATE INDEX idx_loans_member ON loans(member_id);
CREATE INDEX idx_loans_open   ON loans(book_id) WHERE returned_on IS NULL;

-- Sample data
INSERT INTO authors (author_id, full_name, birth_year) VALUES
    (1, 'Ada Example', 1950),
    (2, 'Ben Sample', 1972);

INSERT INTO books (book_id, title, author_id, isbn, published, copies) VALUES
    (1, 'Rivers of Stone', 1, '978-0-00-000001-1', 1998, 2),
    (2, 'A Quiet Harbor',  1, '978-0-00-000002-8', 2004, 1),
    (3, 'Counting Stars',  2, '978-0-00-000003-5', 2015, 3);

INSERT INTO members (member_id, email, full_name, joined_on) VALUES
    (1, 'cara@example.org', 'Cara Demo', '2023-01-15'),
    (2, 'dev@example.org',  'Dev Tester', '2023-06-02');

INSERT INTO loans (book_id, member_id, loaned_on, due_on, returned_on) VALUES
    (1, 1, '2024-03-01', '2024-03-22', '2024-03-20'),
    (3, 1, '2024-04-02', '2024-04-23', NULL),
    (2, 2, '2024-04-05', '2024-04-26', NULL);
