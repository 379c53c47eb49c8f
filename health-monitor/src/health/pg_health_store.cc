#include "pg_health_store.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "wasentinel/common/bytes.h"
#include "wasentinel/common/pg.h"
#include "wasentinel/common/proto_time.h"
#include "wasentinel/common/status_macros.h"

namespace wasentinel::monitor {
namespace {

// Timestamps travel as Unix microseconds both ways.
constexpr const char* kSessionColumns =
    "session_id::text, health, facts, (extract(epoch from last_proof_of_life) * 1000000)::bigint,"
    " (extract(epoch from first_seen_at) * 1000000)::bigint";

std::optional<int64_t> Micros(std::optional<absl::Time> t) {
  if (!t) return std::nullopt;
  return absl::ToUnixMicros(*t);
}

template <class Message>
Message Parse(const pqxx::field& f) {
  Message m;
  if (f.is_null()) return m;
  pqxx::binarystring blob(f);
  m.ParseFromArray(blob.data(), static_cast<int>(blob.size()));
  return m;
}

MonitoredSession ToSession(const pqxx::row& r) {
  MonitoredSession s;
  s.health = Parse<v1::SessionHealth>(r[1]);
  s.health.set_session_id(r[0].as<std::string>());
  s.facts = Parse<sv1::Session>(r[2]);
  if (!r[3].is_null()) s.last_proof_of_life = absl::FromUnixMicros(r[3].as<int64_t>());
  s.first_seen_at = absl::FromUnixMicros(r[4].as<int64_t>());
  return s;
}

// The enum a column names (NULL or an unknown name: the zero value, UNSPECIFIED).
template <class Enum, class Parse>
Enum EnumOf(const pqxx::field& f, Parse parse) {
  Enum e{};
  if (!f.is_null()) parse(f.as<std::string>(), &e);
  return e;
}

std::string LevelsArray(const std::vector<v1::HealthLevel>& levels) {
  std::vector<std::string> names;
  names.reserve(levels.size());
  for (auto l : levels) names.push_back(v1::HealthLevel_Name(l));
  return absl::StrCat("{", absl::StrJoin(names, ","), "}");
}

std::string StatesArray(const std::vector<sv1::SessionState>& states) {
  std::vector<std::string> names;
  names.reserve(states.size());
  for (auto s : states) names.push_back(sv1::SessionState_Name(s));
  return absl::StrCat("{", absl::StrJoin(names, ","), "}");
}

}  // namespace

const std::vector<Migration>& PgHealthStore::Migrations() {
  static const auto* migrations = new std::vector<Migration>{
      {1, "monitor sessions, transitions, recoveries, alerts, jobs, cursor", R"sql(
CREATE TABLE monitor_sessions (
  session_id uuid PRIMARY KEY,
  tenant_id text NOT NULL,
  level text NOT NULL,
  state text NOT NULL,
  score integer NOT NULL,
  manual_intervention boolean NOT NULL DEFAULT false,
  health bytea NOT NULL,              -- monitor.v1.SessionHealth
  facts bytea NOT NULL,               -- session.v1.Session, the last facts seen
  last_proof_of_life timestamptz,
  first_seen_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX monitor_sessions_tenant ON monitor_sessions (tenant_id, session_id);
CREATE INDEX monitor_sessions_level ON monitor_sessions (level);

CREATE TABLE monitor_transitions (
  id bigserial PRIMARY KEY,
  session_id uuid NOT NULL REFERENCES monitor_sessions (session_id) ON DELETE CASCADE,
  at timestamptz NOT NULL,
  from_level text, to_level text,   -- monitor.v1.HealthLevel names; NULL: unchanged
  from_state text, to_state text,   -- session.v1.SessionState names; NULL: unchanged
  cause text NOT NULL DEFAULT ''
);
CREATE INDEX monitor_transitions_session_at ON monitor_transitions (session_id, at);

CREATE TABLE monitor_recoveries (
  id bigserial PRIMARY KEY,
  session_id uuid NOT NULL REFERENCES monitor_sessions (session_id) ON DELETE CASCADE,
  at timestamptz NOT NULL,
  action text NOT NULL,             -- RecoveryAttempt.Action name
  outcome text NOT NULL,            -- RecoveryAttempt.Outcome name
  trigger text NOT NULL DEFAULT '',
  error text NOT NULL DEFAULT ''
);
CREATE INDEX monitor_recoveries_session_at ON monitor_recoveries (session_id, at);
CREATE INDEX monitor_recoveries_at ON monitor_recoveries (at);

CREATE TABLE monitor_alerts (
  dedup_key text PRIMARY KEY,
  session_id uuid,
  event_type text NOT NULL,
  severity text NOT NULL,
  raised_at timestamptz NOT NULL,
  resolved_at timestamptz
);
CREATE INDEX monitor_alerts_open ON monitor_alerts (dedup_key) WHERE resolved_at IS NULL;

CREATE TABLE monitor_jobs (
  name text PRIMARY KEY,
  paused boolean NOT NULL DEFAULT false,
  runs bigint NOT NULL DEFAULT 0,
  failures bigint NOT NULL DEFAULT 0,
  last_run_at timestamptz,
  last_result bytea                  -- monitor.v1.JobResult
);

CREATE TABLE monitor_cursor (
  id integer PRIMARY KEY CHECK (id = 1),
  last_sequence bigint NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);
)sql"},
      {2, "the monitor that leads", R"sql(
CREATE TABLE monitor_leader (
  id integer PRIMARY KEY CHECK (id = 1),
  replica text NOT NULL,
  since timestamptz NOT NULL,
  heartbeat_at timestamptz NOT NULL
);
)sql"},
      {3, "history pruned by time", R"sql(
CREATE INDEX monitor_transitions_at ON monitor_transitions (at);
CREATE INDEX monitor_alerts_resolved_at ON monitor_alerts (resolved_at)
  WHERE resolved_at IS NOT NULL;
)sql"},
      {4, "drops marked on transitions; sessions found by name, number or id", R"sql(
ALTER TABLE monitor_transitions ADD COLUMN dropped boolean NOT NULL DEFAULT false;
-- SearchKey (store.h); '' until the session is saved again (LoadAll fills the older rows).
ALTER TABLE monitor_sessions ADD COLUMN search text NOT NULL DEFAULT '';
)sql"},
  };
  return *migrations;
}

absl::StatusOr<std::vector<MonitoredSession>> PgHealthStore::LoadAll() {
  std::vector<MonitoredSession> out;
  std::vector<size_t> unsearchable;  // saved before the search column existed
  WAS_RETURN_IF_ERROR(pool_.Run("load monitored sessions", [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    for (const auto& row : n.exec(absl::StrCat("SELECT ", kSessionColumns,
                                               ", search = '' FROM monitor_sessions ORDER BY 1"))) {
      if (row[5].as<bool>()) unsearchable.push_back(out.size());
      out.push_back(ToSession(row));
    }
  }));
  if (unsearchable.empty()) return out;
  WAS_RETURN_IF_ERROR(pool_.Transact("index monitored sessions for search", [&](pqxx::work& w) {
    for (size_t i : unsearchable) {
      w.exec_params("UPDATE monitor_sessions SET search = $2 WHERE session_id = $1::uuid",
                    out[i].health.session_id(), SearchKey(out[i]));
    }
  }));
  return out;
}

std::string SearchKey(const MonitoredSession& s) {
  std::string digits;
  for (char c : s.facts.phone_number()) {
    if (absl::ascii_isdigit(static_cast<unsigned char>(c))) digits.push_back(c);
  }
  return absl::AsciiStrToLower(absl::StrCat(s.health.account_name(), "\n", s.facts.session_name(),
                                            "\n", digits, "\n", s.health.session_id()));
}

std::string NormalizeQuery(std::string_view query) {
  std::string digits;
  bool number = true;
  for (char c : query) {
    if (absl::ascii_isdigit(static_cast<unsigned char>(c))) {
      digits.push_back(c);
    } else if (!absl::StrContains(" +-().", c)) {
      number = false;
    }
  }
  if (number && digits.size() >= 3) return digits;
  std::string text(query);
  absl::StripAsciiWhitespace(&text);
  return absl::AsciiStrToLower(text);
}

namespace {

// The upsert of one session, in any transaction.
void SaveIn(pqxx::transaction_base& t, const MonitoredSession& s) {
  t.exec_params(
      absl::StrCat(
          "INSERT INTO monitor_sessions (session_id, tenant_id, level, state, score,"
          " manual_intervention, health, facts, last_proof_of_life, first_seen_at, search,"
          " updated_at) VALUES ($1::uuid, $2, $3, $4, $5, $6, decode($7, 'hex'),"
          " decode($8, 'hex'), CASE WHEN $9::bigint IS NULL THEN NULL ELSE ",
          PgTime(9), " END, ", PgTime(10),
          ", $11, now()) ON CONFLICT (session_id) DO UPDATE SET tenant_id = EXCLUDED.tenant_id,"
          " level = EXCLUDED.level, state = EXCLUDED.state, score = EXCLUDED.score,"
          " manual_intervention = EXCLUDED.manual_intervention, health = EXCLUDED.health,"
          " facts = EXCLUDED.facts, last_proof_of_life = EXCLUDED.last_proof_of_life,"
          " search = EXCLUDED.search, updated_at = now()"),
      s.health.session_id(), s.health.tenant_id(), v1::HealthLevel_Name(s.health.level()),
      sv1::SessionState_Name(s.health.state()), s.health.score(),
      s.health.manual_intervention_required(), PgHex(s.health.SerializeAsString()),
      PgHex(s.facts.SerializeAsString()), Micros(s.last_proof_of_life),
      absl::ToUnixMicros(s.first_seen_at), SearchKey(s));
}

// The insert of one transition, in any transaction; its id. NULL: that part did not change.
int64_t AddTransitionIn(pqxx::transaction_base& tx, const v1::Transition& t) {
  auto level = [](v1::HealthLevel l) {
    return l == v1::HEALTH_LEVEL_UNSPECIFIED ? std::nullopt
                                             : std::optional<std::string>(v1::HealthLevel_Name(l));
  };
  auto state = [](sv1::SessionState s) {
    return s == sv1::SESSION_STATE_UNSPECIFIED
               ? std::nullopt
               : std::optional<std::string>(sv1::SessionState_Name(s));
  };
  auto r = tx.exec_params(
      absl::StrCat("INSERT INTO monitor_transitions (session_id, at, from_level, to_level,"
                   " from_state, to_state, cause, dropped) VALUES ($1::uuid, ",
                   PgTime(2), ", $3, $4, $5, $6, $7, $8) RETURNING id"),
      t.session_id(), absl::ToUnixMicros(FromProto(t.at())), level(t.from_level()),
      level(t.to_level()), state(t.from_state()), state(t.to_state()), t.cause(), t.drop());
  return r[0][0].as<int64_t>();
}

}  // namespace

absl::Status PgHealthStore::Save(const MonitoredSession& s) {
  WAS_RETURN_IF_ERROR(CheckSessionId(s.health.session_id()));
  return pool_.Run("save monitored session", [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    SaveIn(n, s);
  });
}

absl::Status PgHealthStore::SaveBatch(const std::vector<const MonitoredSession*>& sessions,
                                      const std::vector<v1::Transition>& transitions) {
  for (const auto* s : sessions) WAS_RETURN_IF_ERROR(CheckSessionId(s->health.session_id()));
  for (const auto& t : transitions) WAS_RETURN_IF_ERROR(CheckSessionId(t.session_id()));
  if (sessions.empty() && transitions.empty()) return absl::OkStatus();
  return pool_.Transact("save monitored sessions", [&](pqxx::work& w) {
    for (const auto* s : sessions) SaveIn(w, *s);
    for (const auto& t : transitions) AddTransitionIn(w, t);
  });
}

absl::Status PgHealthStore::Forget(const std::string& session_id) {
  WAS_RETURN_IF_ERROR(CheckSessionId(session_id));
  return pool_.Run("forget monitored session", [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    n.exec_params("DELETE FROM monitor_sessions WHERE session_id = $1::uuid", session_id);
  });
}

absl::StatusOr<MonitoredSession> PgHealthStore::Get(const std::string& session_id) {
  WAS_RETURN_IF_ERROR(CheckSessionId(session_id));
  std::optional<MonitoredSession> out;
  WAS_RETURN_IF_ERROR(pool_.Run("get monitored session", [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    auto r = n.exec_params(absl::StrCat("SELECT ", kSessionColumns,
                                        " FROM monitor_sessions WHERE session_id = $1::uuid"),
                           session_id);
    if (!r.empty()) out = ToSession(r[0]);
  }));
  if (!out)
    return absl::NotFoundError(absl::StrCat("the monitor has not seen session ", session_id));
  return *std::move(out);
}

absl::StatusOr<HealthPage> PgHealthStore::List(const HealthFilter& filter, int page_size,
                                               const std::string& page_token) {
  if (!page_token.empty()) WAS_RETURN_IF_ERROR(CheckSessionId(page_token));
  HealthPage page;
  WAS_RETURN_IF_ERROR(pool_.Run("list monitored sessions", [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    auto r =
        n.exec_params(absl::StrCat("SELECT ", kSessionColumns,
                                   " FROM monitor_sessions WHERE ($1 = '' OR tenant_id = $1)"
                                   " AND ($2 = '{}' OR level = ANY($2::text[]))"
                                   " AND (NOT $3 OR manual_intervention)"
                                   " AND ($4 = '' OR session_id > NULLIF($4, '')::uuid)"
                                   " AND ($6 = '{}' OR state = ANY($6::text[]))"
                                   " AND ($7 = '' OR strpos(search, $7) > 0)"
                                   " ORDER BY session_id LIMIT $5"),
                      filter.tenant_id, LevelsArray(filter.levels), filter.manual_intervention_only,
                      page_token, page_size + 1, StatesArray(filter.states), filter.query);
    for (const auto& row : r) page.sessions.push_back(ToSession(row));
  }));
  if (static_cast<int>(page.sessions.size()) > page_size) {
    page.sessions.pop_back();
    page.next_page_token = page.sessions.back().health.session_id();
  }
  return page;
}

absl::StatusOr<v1::GetHealthStatsResponse> PgHealthStore::Stats(const std::string& tenant_id) {
  v1::GetHealthStatsResponse out;
  WAS_RETURN_IF_ERROR(pool_.Run("health stats", [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    auto r = n.exec_params(
        "SELECT level, state, count(*), count(*) FILTER (WHERE manual_intervention)"
        " FROM monitor_sessions WHERE ($1 = '' OR tenant_id = $1) GROUP BY 1, 2 ORDER BY 1, 2",
        tenant_id);
    for (const auto& row : r) {
      auto* count = out.add_counts();
      const auto level = EnumOf<v1::HealthLevel>(row[0], v1::HealthLevel_Parse);
      const auto state = EnumOf<sv1::SessionState>(row[1], sv1::SessionState_Parse);
      count->set_level(level);
      count->set_state(state);
      count->set_count(row[2].as<int64_t>());
      out.set_total(out.total() + count->count());
      out.set_manual_intervention(out.manual_intervention() + row[3].as<int64_t>());
      if (level == v1::HEALTH_LEVEL_HEALTHY) out.set_healthy(out.healthy() + count->count());
      if (level == v1::HEALTH_LEVEL_WARNING) out.set_warning(out.warning() + count->count());
      if (level == v1::HEALTH_LEVEL_CRITICAL) out.set_critical(out.critical() + count->count());
    }
  }));
  return out;
}

absl::StatusOr<v1::GetHealthHistoryResponse> PgHealthStore::FleetHistory(
    const std::string& tenant_id, absl::Time since, absl::Time until, absl::Duration bucket) {
  const int64_t step = absl::ToInt64Microseconds(bucket);
  if (step <= 0 || until <= since) return absl::InvalidArgumentError("an empty range");
  const int64_t from = absl::ToUnixMicros(since);
  const int64_t to = absl::ToUnixMicros(until);
  const int64_t n = (to - from + step - 1) / step;
  v1::GetHealthHistoryResponse out;
  for (int64_t i = 0; i < n; ++i) {
    auto* b = out.add_buckets();
    *b->mutable_start() = ToProto(absl::FromUnixMicros(from + i * step));
    *b->mutable_end() = ToProto(absl::FromUnixMicros(std::min(to, from + (i + 1) * step)));
  }
  // $1 tenant ('' every one), $2 since, $3 until (Unix microseconds), $4 bucket length (µs),
  // $5 bucket count. A row's bucket: whole buckets from `since` (-1: before it).
  const std::string sessions =
      "WITH sess AS (SELECT session_id FROM monitor_sessions WHERE ($1 = '' OR tenant_id = $1)) ";
  auto bucket_of = [](std::string_view column) {
    return absl::StrCat("greatest(-1, floor((", PgEpochMicros(column),
                        " - $2) / $4::float8))::int");
  };
  auto bucket_at = [&](int i) {
    return i >= 0 && i < out.buckets_size() ? out.mutable_buckets(i) : nullptr;
  };
  WAS_RETURN_IF_ERROR(pool_.Run("fleet history", [&](pqxx::connection& c) {
    pqxx::nontransaction q(c);
    // Each session's level at each bucket's end: the level of its last transition up to then,
    // carried over the buckets without one.
    auto levels = q.exec_params(
        absl::StrCat(sessions,
                     ", marks AS (SELECT DISTINCT ON (session_id, b) session_id, b,"
                     " to_level FROM (SELECT t.session_id, ",
                     bucket_of("t.at"),
                     " AS b, t.to_level, t.at, t.id FROM monitor_transitions t JOIN sess"
                     " USING (session_id) WHERE t.to_level IS NOT NULL AND t.at < ",
                     PgTime(3),
                     ") x ORDER BY session_id, b, at DESC, id DESC),"
                     " spans AS (SELECT b, coalesce(lead(b) OVER (PARTITION BY session_id"
                     " ORDER BY b), $5) AS next_b, to_level FROM marks)"
                     " SELECT g.i, s.to_level, count(*) FROM spans s JOIN generate_series(0, $5"
                     " - 1) AS g(i) ON g.i >= s.b AND g.i < s.next_b GROUP BY 1, 2"),
        tenant_id, from, to, step, n);
    for (const auto& row : levels) {
      auto* b = bucket_at(row[0].as<int>());
      if (!b) continue;
      const int64_t count = row[2].as<int64_t>();
      switch (EnumOf<v1::HealthLevel>(row[1], v1::HealthLevel_Parse)) {
        case v1::HEALTH_LEVEL_HEALTHY:
          b->set_healthy(count);
          break;
        case v1::HEALTH_LEVEL_WARNING:
          b->set_warning(count);
          break;
        case v1::HEALTH_LEVEL_CRITICAL:
          b->set_critical(count);
          break;
        case v1::HEALTH_LEVEL_INACTIVE:
          b->set_inactive(count);
          break;
        default:
          break;
      }
    }
    auto changes = q.exec_params(
        absl::StrCat(sessions, "SELECT ", bucket_of("t.at"),
                     ", count(*) FILTER (WHERE t.dropped), count(*) FILTER (WHERE"
                     " t.to_state = 'SESSION_STATE_CONNECTED' AND t.from_state IN"
                     " ('SESSION_STATE_DISCONNECTED', 'SESSION_STATE_CONNECTING'))"
                     " FROM monitor_transitions t JOIN sess USING (session_id) WHERE t.at >= ",
                     PgTime(2), " AND t.at < ", PgTime(3), " GROUP BY 1"),
        tenant_id, from, to, step);
    for (const auto& row : changes) {
      auto* b = bucket_at(row[0].as<int>());
      if (!b) continue;
      b->set_drops(row[1].as<int64_t>());
      b->set_reconnects(row[2].as<int64_t>());
    }
    auto recoveries = q.exec_params(
        absl::StrCat(
            sessions, "SELECT ", bucket_of("r.at"),
            ", count(*), count(*) FILTER (WHERE r.outcome = 'OUTCOME_SUCCEEDED' OR"
            " (r.outcome <> 'OUTCOME_FAILED' AND EXISTS (SELECT 1 FROM monitor_transitions t"
            " WHERE t.session_id = r.session_id AND t.to_state = 'SESSION_STATE_CONNECTED'"
            " AND t.at >= r.at AND t.at < r.at + interval '5 minutes')))"
            " FROM monitor_recoveries r JOIN sess USING (session_id) WHERE r.at >= ",
            PgTime(2), " AND r.at < ", PgTime(3), " GROUP BY 1"),
        tenant_id, from, to, step);
    for (const auto& row : recoveries) {
      auto* b = bucket_at(row[0].as<int>());
      if (!b) continue;
      b->set_recovery_attempts(row[1].as<int64_t>());
      b->set_recoveries_succeeded(row[2].as<int64_t>());
    }
  }));
  for (const auto& b : out.buckets()) {
    out.set_drops(out.drops() + b.drops());
    out.set_recovery_attempts(out.recovery_attempts() + b.recovery_attempts());
    out.set_recoveries_succeeded(out.recoveries_succeeded() + b.recoveries_succeeded());
  }
  if (out.recovery_attempts() > 0) {
    out.set_recovery_success_percent(100.0 * static_cast<double>(out.recoveries_succeeded()) /
                                     static_cast<double>(out.recovery_attempts()));
  }
  return out;
}

absl::StatusOr<int64_t> PgHealthStore::AddTransition(const v1::Transition& t) {
  WAS_RETURN_IF_ERROR(CheckSessionId(t.session_id()));
  int64_t id = 0;
  WAS_RETURN_IF_ERROR(pool_.Run("add transition", [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    id = AddTransitionIn(n, t);
  }));
  return id;
}

absl::StatusOr<int64_t> PgHealthStore::AddRecovery(const v1::RecoveryAttempt& a) {
  WAS_RETURN_IF_ERROR(CheckSessionId(a.session_id()));
  int64_t id = 0;
  WAS_RETURN_IF_ERROR(pool_.Run("add recovery attempt", [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    auto r = n.exec_params(
        absl::StrCat("INSERT INTO monitor_recoveries (session_id, at, action, outcome, trigger,"
                     " error) VALUES ($1::uuid, ",
                     PgTime(2), ", $3, $4, $5, $6) RETURNING id"),
        a.session_id(), absl::ToUnixMicros(FromProto(a.at())),
        v1::RecoveryAttempt::Action_Name(a.action()),
        v1::RecoveryAttempt::Outcome_Name(a.outcome()), a.trigger(), a.error());
    id = r[0][0].as<int64_t>();
  }));
  return id;
}

absl::Status PgHealthStore::SetRecoveryOutcome(int64_t id, v1::RecoveryAttempt::Outcome outcome,
                                               const std::string& error) {
  return pool_.Run("set recovery outcome", [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    n.exec_params("UPDATE monitor_recoveries SET outcome = $2, error = $3 WHERE id = $1", id,
                  v1::RecoveryAttempt::Outcome_Name(outcome), error);
  });
}

namespace {

v1::RecoveryAttempt ToRecovery(const pqxx::row& r) {
  v1::RecoveryAttempt a;
  a.set_id(r[0].as<int64_t>());
  a.set_session_id(r[1].as<std::string>());
  *a.mutable_at() = ToProto(absl::FromUnixMicros(r[2].as<int64_t>()));
  a.set_action(EnumOf<v1::RecoveryAttempt::Action>(r[3], v1::RecoveryAttempt::Action_Parse));
  a.set_outcome(EnumOf<v1::RecoveryAttempt::Outcome>(r[4], v1::RecoveryAttempt::Outcome_Parse));
  a.set_trigger(r[5].as<std::string>());
  a.set_error(r[6].as<std::string>());
  return a;
}

constexpr const char* kRecoveryColumns =
    "id, session_id::text, (extract(epoch from at) * 1000000)::bigint, action, outcome, trigger,"
    " error";

}  // namespace

absl::StatusOr<std::vector<v1::RecoveryAttempt>> PgHealthStore::ReconnectsSince(absl::Time since) {
  std::vector<v1::RecoveryAttempt> out;
  WAS_RETURN_IF_ERROR(pool_.Run("recent reconnects", [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    auto r = n.exec_params(absl::StrCat("SELECT ", kRecoveryColumns,
                                        " FROM monitor_recoveries WHERE action = "
                                        "'ACTION_RECONNECT' AND at > ",
                                        PgTime(1), " ORDER BY at"),
                           absl::ToUnixMicros(since));
    for (const auto& row : r) out.push_back(ToRecovery(row));
  }));
  return out;
}

absl::StatusOr<v1::ListTransitionsResponse> PgHealthStore::History(const std::string& session_id,
                                                                   absl::Time since,
                                                                   absl::Time until, int limit) {
  WAS_ASSIGN_OR_RETURN(MonitoredSession s, Get(session_id));
  v1::ListTransitionsResponse out;
  const absl::Time start = std::max(since, s.first_seen_at);
  std::vector<std::pair<absl::Time, std::string>> states;  // (at, to_state), from `start` on
  WAS_RETURN_IF_ERROR(pool_.Run("session history", [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    auto r = n.exec_params(
        absl::StrCat("SELECT * FROM (SELECT id, (extract(epoch from at) * 1000000)::bigint,"
                     " from_level, to_level, from_state, to_state, cause, dropped"
                     " FROM monitor_transitions"
                     " WHERE session_id = $1::uuid AND at >= ",
                     PgTime(2), " AND at < ", PgTime(3), " ORDER BY at DESC, id DESC LIMIT $4) t",
                     " ORDER BY 2, 1"),
        session_id, absl::ToUnixMicros(since), absl::ToUnixMicros(until), limit);
    for (const auto& row : r) {
      auto* t = out.add_transitions();
      t->set_id(row[0].as<int64_t>());
      t->set_session_id(session_id);
      *t->mutable_at() = ToProto(absl::FromUnixMicros(row[1].as<int64_t>()));
      t->set_from_level(EnumOf<v1::HealthLevel>(row[2], v1::HealthLevel_Parse));
      t->set_to_level(EnumOf<v1::HealthLevel>(row[3], v1::HealthLevel_Parse));
      t->set_from_state(EnumOf<sv1::SessionState>(row[4], sv1::SessionState_Parse));
      t->set_to_state(EnumOf<sv1::SessionState>(row[5], sv1::SessionState_Parse));
      t->set_cause(row[6].as<std::string>());
      t->set_drop(row[7].as<bool>());
    }
    auto rec = n.exec_params(
        absl::StrCat("SELECT * FROM (SELECT ", kRecoveryColumns,
                     " FROM monitor_recoveries WHERE session_id = $1::uuid AND at >= ", PgTime(2),
                     " AND at < ", PgTime(3),
                     " ORDER BY at DESC, id DESC LIMIT $4) r ORDER BY 3, 1"),
        session_id, absl::ToUnixMicros(since), absl::ToUnixMicros(until), limit);
    for (const auto& row : rec) *out.add_recoveries() = ToRecovery(row);
    if (start >= until) return;
    // Uptime: the state in force at `start` (the last state transition at or before it), then
    // every state transition up to `until`.
    auto st = n.exec_params(
        absl::StrCat("SELECT (extract(epoch from at) * 1000000)::bigint, to_state"
                     " FROM monitor_transitions WHERE session_id = $1::uuid"
                     " AND to_state IS NOT NULL AND at < ",
                     PgTime(3), " AND at >= COALESCE((SELECT max(at) FROM monitor_transitions",
                     " WHERE session_id = $1::uuid AND to_state IS NOT NULL AND at <= ", PgTime(2),
                     "), ", PgTime(2), ") ORDER BY at, id"),
        session_id, absl::ToUnixMicros(start), absl::ToUnixMicros(until));
    for (const auto& row : st) {
      states.emplace_back(absl::FromUnixMicros(row[0].as<int64_t>()), row[1].as<std::string>());
    }
  }));
  absl::Duration connected;
  const absl::Duration watched = std::max(absl::ZeroDuration(), until - start);
  for (size_t i = 0; i < states.size(); ++i) {
    if (states[i].second != "SESSION_STATE_CONNECTED") continue;
    const absl::Time from = std::max(states[i].first, start);
    const absl::Time to = i + 1 < states.size() ? states[i + 1].first : until;
    if (to > from) connected += to - from;
  }
  *out.mutable_connected() = ToProto(connected);
  *out.mutable_watched() = ToProto(watched);
  out.set_uptime_percent(
      watched > absl::ZeroDuration() ? 100.0 * absl::FDivDuration(connected, watched) : 0.0);
  return out;
}

absl::StatusOr<std::vector<OpenAlert>> PgHealthStore::OpenAlerts() {
  std::vector<OpenAlert> out;
  WAS_RETURN_IF_ERROR(pool_.Run("open alerts", [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    auto r = n.exec(
        "SELECT dedup_key, COALESCE(session_id::text, ''), event_type, severity,"
        " (extract(epoch from raised_at) * 1000000)::bigint FROM monitor_alerts"
        " WHERE resolved_at IS NULL ORDER BY raised_at, dedup_key");
    for (const auto& row : r) {
      out.push_back(OpenAlert{row[0].as<std::string>(), row[1].as<std::string>(),
                              row[2].as<std::string>(), row[3].as<std::string>(),
                              absl::FromUnixMicros(row[4].as<int64_t>())});
    }
  }));
  return out;
}

absl::Status PgHealthStore::RecordAlert(const OpenAlert& a) {
  if (!a.session_id.empty()) WAS_RETURN_IF_ERROR(CheckSessionId(a.session_id));
  return pool_.Run("record alert", [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    n.exec_params(
        absl::StrCat("INSERT INTO monitor_alerts (dedup_key, session_id, event_type, severity,"
                     " raised_at) VALUES ($1, NULLIF($2, '')::uuid, $3, $4, ",
                     PgTime(5),
                     ") ON CONFLICT (dedup_key) DO UPDATE SET event_type = EXCLUDED.event_type,"
                     " severity = EXCLUDED.severity, raised_at = CASE WHEN"
                     " monitor_alerts.resolved_at IS NULL THEN monitor_alerts.raised_at ELSE"
                     " EXCLUDED.raised_at END, resolved_at = NULL"),
        a.dedup_key, a.session_id, a.event_type, a.severity, absl::ToUnixMicros(a.raised_at));
  });
}

absl::Status PgHealthStore::CloseAlert(const std::string& dedup_key, absl::Time at) {
  return pool_.Run("close alert", [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    n.exec_params(absl::StrCat("UPDATE monitor_alerts SET resolved_at = ", PgTime(2),
                               " WHERE dedup_key = $1 AND resolved_at IS NULL"),
                  dedup_key, absl::ToUnixMicros(at));
  });
}

absl::StatusOr<std::vector<JobRecord>> PgHealthStore::Jobs() {
  std::vector<JobRecord> out;
  WAS_RETURN_IF_ERROR(pool_.Run("list jobs", [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    auto r = n.exec(
        "SELECT name, paused, runs, failures, (extract(epoch from last_run_at) * 1000000)::bigint,"
        " last_result FROM monitor_jobs ORDER BY name");
    for (const auto& row : r) {
      JobRecord j;
      j.name = row[0].as<std::string>();
      j.paused = row[1].as<bool>();
      j.runs = row[2].as<int64_t>();
      j.failures = row[3].as<int64_t>();
      if (!row[4].is_null()) j.last_run_at = absl::FromUnixMicros(row[4].as<int64_t>());
      j.last_result = Parse<v1::JobResult>(row[5]);
      out.push_back(std::move(j));
    }
  }));
  return out;
}

absl::Status PgHealthStore::SaveJob(const JobRecord& j) {
  return pool_.Run("save job", [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    n.exec_params(
        absl::StrCat("INSERT INTO monitor_jobs (name, paused, runs, failures, last_run_at,"
                     " last_result) VALUES ($1, $2, $3, $4, CASE WHEN $5::bigint IS NULL THEN NULL"
                     " ELSE ",
                     PgTime(5),
                     " END, decode($6, 'hex')) ON CONFLICT (name) DO UPDATE SET paused ="
                     " EXCLUDED.paused, runs = EXCLUDED.runs, failures = EXCLUDED.failures,"
                     " last_run_at = EXCLUDED.last_run_at, last_result = EXCLUDED.last_result"),
        j.name, j.paused, j.runs, j.failures, Micros(j.last_run_at),
        PgHex(j.last_result.SerializeAsString()));
  });
}

absl::StatusOr<int64_t> PgHealthStore::LastSequence() {
  int64_t out = 0;
  WAS_RETURN_IF_ERROR(pool_.Run("read the event cursor", [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    auto r = n.exec("SELECT last_sequence FROM monitor_cursor WHERE id = 1");
    if (!r.empty()) out = r[0][0].as<int64_t>();
  }));
  return out;
}

absl::Status PgHealthStore::SetLastSequence(int64_t sequence) {
  return pool_.Run("move the event cursor", [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    n.exec_params(
        "INSERT INTO monitor_cursor (id, last_sequence) VALUES (1, $1) ON CONFLICT (id) DO"
        " UPDATE SET last_sequence = GREATEST(monitor_cursor.last_sequence, "
        "EXCLUDED.last_sequence),"
        " updated_at = now()",
        sequence);
  });
}

absl::StatusOr<int64_t> PgHealthStore::PruneHistoryBefore(absl::Time before, int batch) {
  int64_t total = 0;
  for (const char* table : {"monitor_transitions", "monitor_recoveries"}) {
    for (;;) {
      int64_t n = 0;
      WAS_RETURN_IF_ERROR(pool_.Run("prune monitor history", [&](pqxx::connection& c) {
        pqxx::nontransaction tx(c);
        n = tx.exec_params(absl::StrCat("DELETE FROM ", table, " WHERE id IN (SELECT id FROM ",
                                        table, " WHERE at < ", PgTime(1), " LIMIT $2)"),
                           absl::ToUnixMicros(before), batch)
                .affected_rows();
      }));
      total += n;
      if (n < batch) break;
    }
  }
  WAS_RETURN_IF_ERROR(pool_.Run("prune resolved alerts", [&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    total +=
        tx.exec_params(absl::StrCat("DELETE FROM monitor_alerts WHERE resolved_at < ", PgTime(1)),
                       absl::ToUnixMicros(before))
            .affected_rows();
  }));
  return total;
}

}  // namespace wasentinel::monitor
