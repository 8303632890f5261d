-- The search index of a message covers its first 100,000 characters.
--
-- to_tsvector refuses text whose distinct words add up to more than 1 MB
-- ("string is too long for tsvector", PostgreSQL's MAXSTRPOS, 1,048,575
-- bytes), so a long enough message of distinct words could never be stored.
-- 100,000 characters are at most 400,000 bytes of UTF-8, and lower-casing
-- keeps each character within 4 bytes (its longest growth: U+0130, 2 bytes,
-- becomes 3): the words of the prefix stay far below the limit whatever they
-- are. PostgreSQL's other tsvector limits cannot fail a row: a word over
-- 2,047 bytes is left out of the index (a notice), positions over 16,383
-- count as 16,383, and a word keeps at most 256 of them. Messages up to
-- 100,000 characters are indexed exactly as before; a longer one is found
-- by its beginning (the substring fallback still reads all of it).
ALTER TABLE messages DROP COLUMN search_vector;
ALTER TABLE messages
    ADD COLUMN search_vector tsvector
        GENERATED ALWAYS AS (to_tsvector('simple', left(content, 100000))) STORED;
CREATE INDEX messages_search_idx ON messages USING gin (search_vector);
