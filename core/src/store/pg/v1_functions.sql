-- Migration 1 (PostgreSQL): the SQL functions the engine's queries use under SQLite's names,
-- which the backend rewrites to these (`money` is a built-in type name here).

-- billhost_money(minor, scale): integer minor units as an exact decimal string
-- (billhost_money(-1234, 2) is '-12.34'), never through a float.
CREATE FUNCTION billhost_money(minor BIGINT, scale BIGINT) RETURNS TEXT
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE
        WHEN k.s = 0 THEN minor::text
        ELSE (CASE WHEN minor < 0 THEN '-' ELSE '' END)
             || div(abs(minor::numeric), k.p)::text
             || '.'
             || lpad(mod(abs(minor::numeric), k.p)::text, k.s, '0')
    END
    FROM (SELECT least(greatest(scale, 0), 12)::int AS s,
                 power(10::numeric, least(greatest(scale, 0), 12))::bigint::numeric AS p) AS k
$$;

-- A `sum` of BIGINTs is numeric here: the same, for an integral sum.
CREATE FUNCTION billhost_money(minor NUMERIC, scale BIGINT) RETURNS TEXT
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT billhost_money(minor::bigint, scale)
$$;

-- group_concat(value, separator): SQLite's aggregate (NULLs skipped).
CREATE FUNCTION billhost_concat_step(acc TEXT, v anyelement, sep TEXT) RETURNS TEXT
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN v IS NULL THEN acc WHEN acc IS NULL THEN v::text ELSE acc || sep || v::text END
$$;
CREATE AGGREGATE group_concat(anyelement, TEXT) (SFUNC = billhost_concat_step, STYPE = TEXT);

