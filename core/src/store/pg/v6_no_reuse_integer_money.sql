-- Migration 6 (PostgreSQL): what SQLite's migration 6 adds, PostgreSQL's schema has had from
-- migration 1: ids are identity columns, whose sequences never hand out an id twice (a deleted
-- or rolled-back row's id included), and money columns are BIGINT, which refuses a fraction, a
-- float or text by type. The version is kept so that both backends number their schemas alike.
--
-- `billhost check` asks SQLite's `typeof` and `quote` of money columns (a REAL or TEXT cannot
-- get in since migration 6 there, nor ever here): the same answers, under the same names.
CREATE FUNCTION typeof(v anyelement) RETURNS TEXT
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN v IS NULL THEN 'null'
        WHEN pg_typeof(v) IN ('bigint'::regtype, 'integer'::regtype, 'smallint'::regtype,
                              'boolean'::regtype) THEN 'integer'
        WHEN pg_typeof(v) IN ('real'::regtype, 'double precision'::regtype,
                              'numeric'::regtype) THEN 'real'
        WHEN pg_typeof(v) = 'bytea'::regtype THEN 'blob'
        ELSE 'text'
    END
$$;

CREATE FUNCTION quote(v anyelement) RETURNS TEXT
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(quote_literal(v::text), 'NULL')
$$;
