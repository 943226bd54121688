-- AI token budgets (issue 24): one counter per user or team and calendar month (UTC), and what
-- each model was charged in it. Counts only: no message content is ever stored here.
--
-- A model call reserves its estimate in reserved_tokens first (one conditional UPDATE that
-- holds only while used_tokens + reserved_tokens + estimate <= the limit) and settles it after
-- the call: the estimate leaves reserved_tokens and the reported cost joins used_tokens. The
-- limit counts both, so a reservation never settled (a crash in between) stays charged.

CREATE TABLE ai_budgets (
    -- 'user:<user id>:<period>' or 'team:<team id>:<period>': the key a reservation settles to,
    -- so a call that crosses midnight at the month's end settles in the month it reserved in.
    id              TEXT PRIMARY KEY,
    -- Exactly one owner: the user (their own budget) or the team (its pool).
    user_id         TEXT REFERENCES users (id) ON DELETE CASCADE,
    team_id         TEXT REFERENCES teams (id) ON DELETE CASCADE,
    -- 'YYYY-MM'.
    period          TEXT NOT NULL,
    used_tokens     BIGINT NOT NULL DEFAULT 0 CHECK (used_tokens >= 0),
    reserved_tokens BIGINT NOT NULL DEFAULT 0 CHECK (reserved_tokens >= 0),
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    CHECK ((user_id IS NULL) <> (team_id IS NULL))
);
CREATE INDEX ai_budgets_user_idx ON ai_budgets (user_id) WHERE user_id IS NOT NULL;
CREATE INDEX ai_budgets_team_idx ON ai_budgets (team_id) WHERE team_id IS NOT NULL;

-- Per model and month: the prompt and completion tokens charged (the provider's figures, or
-- the estimate for calls it reported nothing for, counted in estimated_calls).
CREATE TABLE ai_budget_models (
    budget_id         TEXT NOT NULL REFERENCES ai_budgets (id) ON DELETE CASCADE,
    model             TEXT NOT NULL,
    prompt_tokens     BIGINT NOT NULL DEFAULT 0 CHECK (prompt_tokens >= 0),
    completion_tokens BIGINT NOT NULL DEFAULT 0 CHECK (completion_tokens >= 0),
    estimated_calls   BIGINT NOT NULL DEFAULT 0 CHECK (estimated_calls >= 0),
    PRIMARY KEY (budget_id, model)
);
