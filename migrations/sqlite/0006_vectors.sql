-- The vector store's bookkeeping (adiuva-vector-space): each user's vector size, and every point
-- with the size of its encrypted blob, so that quotas are exact and search and delete go to the
-- one Qdrant collection of the user's size instead of probing every collection. The points
-- themselves (vectors and blobs) stay in the vector store; only sizes and digests are here.

-- One row per user who has points: the size of their vectors (set by the first upsert) and
-- the totals the tier's quotas are checked against. Deleted with the user's last point, which
-- frees the size.
CREATE TABLE vector_spaces (
    user_id    TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    dimensions BIGINT NOT NULL CHECK (dimensions > 0),
    points     BIGINT NOT NULL CHECK (points > 0),
    bytes      BIGINT NOT NULL CHECK (bytes >= 0)
);

-- One row per stored point. `point_id` is the lowercase hex SHA-256 of the client's id (which
-- the client chooses, so it is kept out of the database like any other content); an upsert that
-- replaces a point replaces its size.
CREATE TABLE vector_points (
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    point_id   TEXT NOT NULL,
    size_bytes BIGINT NOT NULL CHECK (size_bytes >= 0),
    PRIMARY KEY (user_id, point_id)
);
