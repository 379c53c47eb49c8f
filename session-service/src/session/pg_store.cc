#include "pg_store.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "wasentinel/common/pg.h"
#include "wasentinel/common/status_macros.h"

namespace wasentinel::session {
namespace {

constexpr std::string_view kStatePrefix = "SESSION_STATE_";
constexpr std::string_view kReasonPrefix = "STATE_REASON_";

// Columns of `sessions` as every query selects them; timestamps as Unix microseconds.
constexpr const char* kSessionColumns =
    "id::text, tenant_id, session_name, phone_number, device_jid, account_name, owner_email,"
    " is_active, auto_connect, auth_key_id, auth_state, connection_status, status_reason,"
    " last_error,"
    " (extract(epoch from last_connected_at) * 1000000)::bigint,"
    " (extract(epoch from last_disconnected_at) * 1000000)::bigint,"
    " (extract(epoch from created_at) * 1000000)::bigint,"
    " (extract(epoch from updated_at) * 1000000)::bigint,"
    " reconnect_count, error_count,"
    " (SELECT l.owner FROM session_leases l LEFT JOIN lease_holders h ON h.holder = l.holder"
    "   WHERE l.session_id = sessions.id AND ((l.holder IS NOT NULL AND h.expires_at > now())"
    "   OR (l.holder IS NULL AND l.expires_at > now()))),"  // kLeaseIsLive
    " failure_code, ban_code,"
    " (extract(epoch from ban_expires_at) * 1000000)::bigint,"
    " (extract(epoch from phone_last_seen_at) * 1000000)::bigint";

constexpr const char* kEventColumns =
    "sequence, session_id::text, tenant_id, from_state, to_state, reason, error,"
    " (extract(epoch from at) * 1000000)::bigint";

std::optional<absl::Time> OptTime(const pqxx::field& f) {
  if (f.is_null()) return std::nullopt;
  return absl::FromUnixMicros(f.as<int64_t>());
}

SessionRecord ToRecord(const pqxx::row& r) {
  SessionRecord s;
  s.id = r[0].as<std::string>();
  s.tenant_id = r[1].as<std::string>();
  s.session_name = r[2].as<std::string>();
  s.phone_number = r[3].is_null() ? "" : r[3].as<std::string>();
  s.device_jid = r[4].is_null() ? "" : r[4].as<std::string>();
  s.account_name = r[5].as<std::string>();
  s.owner_email = r[6].as<std::string>();
  s.is_active = r[7].as<bool>();
  s.auto_connect = r[8].as<bool>();
  if (!r[9].is_null() && !r[10].is_null()) {
    pqxx::binarystring blob(r[10]);
    s.credentials = SealedCredentials{r[9].as<std::string>(), Bytes(blob.begin(), blob.end())};
  }
  s.state = StateFromName(r[11].as<std::string>());
  s.reason = ReasonFromName(r[12].is_null() ? "" : r[12].as<std::string>());
  s.last_error = r[13].is_null() ? "" : r[13].as<std::string>();
  s.last_connected_at = OptTime(r[14]);
  s.last_disconnected_at = OptTime(r[15]);
  s.created_at = absl::FromUnixMicros(r[16].as<int64_t>());
  s.updated_at = absl::FromUnixMicros(r[17].as<int64_t>());
  s.reconnect_count = r[18].as<int64_t>();
  s.error_count = r[19].as<int64_t>();
  s.owner = r[20].is_null() ? "" : r[20].as<std::string>();
  s.failure_code = r[21].as<int>();
  s.ban_code = r[22].as<int>();
  s.ban_expires_at = OptTime(r[23]);
  s.phone_last_seen_at = OptTime(r[24]);
  return s;
}

EventRecord ToEvent(const pqxx::row& r) {
  EventRecord e;
  e.sequence = r[0].as<int64_t>();
  e.session_id = r[1].as<std::string>();
  e.tenant_id = r[2].as<std::string>();
  e.from = StateFromName(r[3].as<std::string>());
  e.to = StateFromName(r[4].as<std::string>());
  e.reason = ReasonFromName(r[5].as<std::string>());
  e.error = r[6].as<std::string>();
  e.at = absl::FromUnixMicros(r[7].as<int64_t>());
  return e;
}

// "{1,2,3}" for = ANY($n::bigint[]) / ::uuid[].
template <class T>
std::string PgArray(const std::vector<T>& items) {
  return absl::StrCat("{", absl::StrJoin(items, ","), "}");
}

// A duration as the SQL interval `$n` (microseconds) makes.
std::string IntervalOf(int n) {
  return absl::StrCat("($", n, "::double precision * interval '1 microsecond')");
}

// Sessions that want a socket (store.h ClaimOrphans), as a condition on `sessions`: a
// temporarily banned one wants it back once its ban ends, so its holder keeps the timer.
constexpr const char* kWantsSocket =
    "auth_state IS NOT NULL AND is_active AND auto_connect AND (connection_status IN"
    " ('QR_PENDING', 'CONNECTING', 'CONNECTED') OR (connection_status = 'DISCONNECTED' AND"
    " status_reason NOT IN ('USER', 'RETRIES_EXHAUSTED', 'CLIENT_OUTDATED', 'LOGIN_REFUSED'))"
    " OR (connection_status = 'BANNED' AND ban_expires_at IS NOT NULL))";

// Expand step of the lease holders (migration 4; README "Architecture" › "More than one
// replica"): replicas of the previous version run beside this one during a rolling update. They
// know only `session_leases.expires_at` (renewed per lease) and `session_replicas` (heartbeat and
// address), and write lease rows with holder NULL. So a lease row of `session_leases l` (LEFT
// JOIN `lease_holders h`) is live while its holder is, or, without a holder, while its own
// expiry is ahead. The contract release, one release after this one, removes `session_replicas`,
// `session_leases.expires_at`, the trigger of migration 4 and every branch on holder NULL here;
// then a lease is live exactly while its holder is.
constexpr const char* kLeaseIsLive =
    "((l.holder IS NOT NULL AND h.expires_at > now()) OR (l.holder IS NULL AND l.expires_at >"
    " now()))";

// A session (`sessions.id`) has a live lease (kLeaseIsLive).
const std::string& HasLiveLease() {
  static const auto* sql = new std::string(
      absl::StrCat("EXISTS (SELECT 1 FROM session_leases l LEFT JOIN lease_holders h"
                   " ON h.holder = l.holder WHERE l.session_id = sessions.id AND ",
                   kLeaseIsLive, ")"));
  return *sql;
}

// Expand step: the live replicas of the previous version, as a query answering (replica_id,
// address), with `$ttl_param` the lease time-to-live in µs. Such a replica beats in
// `session_replicas` and has no live holder (replicas of this version beat there too while the
// previous version runs, but always have one). Removed by the contract release.
std::string PreviousVersionReplicas(int ttl_param) {
  return absl::StrCat(
      "SELECT r.replica_id, r.address FROM session_replicas r WHERE r.heartbeat_at > now() - ",
      IntervalOf(ttl_param),
      " AND NOT EXISTS (SELECT 1 FROM lease_holders o WHERE o.replica_id = r.replica_id"
      " AND o.expires_at > now())");
}

// Expand step: writes the heartbeat the previous version reads (`session_replicas`) for the
// replica `source` selects (replica_id, address). Removed by the contract release.
std::string BeatSql(std::string_view source) {
  return absl::StrCat("INSERT INTO session_replicas (replica_id, address) ", Sv(source),
                      " ON CONFLICT (replica_id) DO UPDATE SET address = EXCLUDED.address,"
                      " heartbeat_at = now()");
}

// Frees the leases of replica incarnations that stopped renewing: the holder rows go, and their
// lease rows with them (ON DELETE CASCADE). Run before taking leases, in its own statement so
// that the taking statement no longer sees those lease rows. A deleted holder is never renewed
// again (RenewHolder only updates), so what is taken here cannot come back to life elsewhere.
// Holders locked by another replica deleting them (or by a renewal) are skipped rather than
// waited for, in holder order, so that replicas taking leases together never deadlock.
constexpr const char* kDeleteExpiredHolders =
    "DELETE FROM lease_holders WHERE holder IN (SELECT holder FROM lease_holders"
    " WHERE expires_at <= now() ORDER BY holder FOR UPDATE SKIP LOCKED)";

// Takes the leases of the session ids `source` selects ($1 owner, $2 holder), each with a fresh
// fencing token: sessions without a lease row, sessions whose lease row is a previous-version
// replica's (holder NULL) that expired, and when `own_too` also those whose lease `owner`
// already has (under any of its incarnations: a restarted replica takes its predecessor's
// leases at once). Live leases of other replicas are left alone; the expired ones of holders
// are gone already (kDeleteExpiredHolders). The DO UPDATE condition is judged on the latest
// version of the row, locked, so a previous-version replica renewing it meanwhile keeps it.
// Expand step: `expires_at` is the holder's own expiry, so that a replica of the previous
// version sees the lease live as long as the holder is (RenewHolder keeps it so while one
// runs); NOT NULL still holds. With the holder gone, the foreign key refuses the row.
std::string TakeLeasesSql(std::string_view source, bool own_too) {
  return absl::StrCat(
      "INSERT INTO session_leases (session_id, owner, holder, token, expires_at) SELECT id, $1,"
      " $2, nextval('session_lease_tokens'), COALESCE((SELECT expires_at FROM lease_holders"
      " WHERE holder = $2), now()) FROM (",
      Sv(source),
      ") AS wanted ON CONFLICT (session_id) DO UPDATE SET owner = EXCLUDED.owner,"
      " holder = EXCLUDED.holder, token = EXCLUDED.token, acquired_at = now(),"
      " expires_at = EXCLUDED.expires_at"
      " WHERE (session_leases.holder IS NULL AND session_leases.expires_at <= now())",
      own_too ? " OR session_leases.owner = EXCLUDED.owner" : "",
      " RETURNING session_id::text, token");
}

std::vector<Lease> ToLeases(const pqxx::result& r) {
  std::vector<Lease> out;
  for (const auto& row : r) out.push_back({row[0].as<std::string>(), row[1].as<int64_t>()});
  return out;
}

constexpr char kFencedPayload[] = "type.wasentinel/fenced";

// "{CONNECTED,DISCONNECTED}" for = ANY($n::text[]).
std::string StatesArray(const std::vector<v1::SessionState>& states) {
  std::vector<std::string> names;
  names.reserve(states.size());
  for (auto s : states) names.push_back(StateName(s));
  return absl::StrCat("{", absl::StrJoin(names, ","), "}");
}

}  // namespace

std::string StateName(v1::SessionState state) {
  std::string name = v1::SessionState_Name(state);
  return name.starts_with(kStatePrefix) ? name.substr(kStatePrefix.size()) : name;
}

v1::SessionState StateFromName(std::string_view name) {
  v1::SessionState s = v1::SESSION_STATE_UNSPECIFIED;
  v1::SessionState_Parse(absl::StrCat(Sv(kStatePrefix), Sv(name)), &s);
  return s;
}

std::string ReasonName(v1::StateReason reason) {
  std::string name = v1::StateReason_Name(reason);
  return name.starts_with(kReasonPrefix) ? name.substr(kReasonPrefix.size()) : name;
}

v1::StateReason ReasonFromName(std::string_view name) {
  v1::StateReason r = v1::STATE_REASON_UNSPECIFIED;
  v1::StateReason_Parse(absl::StrCat(Sv(kReasonPrefix), Sv(name)), &r);
  return r;
}

const std::vector<Migration>& PgSessionStore::Migrations() {
  static const auto* migrations = new std::vector<Migration>{
      {1, "sessions and session_events",
       R"sql(
CREATE TABLE sessions (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id text NOT NULL,
  session_name text NOT NULL DEFAULT 'primary',
  phone_number text,
  device_jid text,
  account_name text NOT NULL DEFAULT '',
  owner_email text NOT NULL DEFAULT '',
  is_active boolean NOT NULL DEFAULT true,
  auto_connect boolean NOT NULL DEFAULT true,
  auth_key_id text,
  auth_state bytea,
  connection_status text NOT NULL DEFAULT 'DISCONNECTED',
  status_reason text,
  last_error text,
  last_connected_at timestamptz,
  last_disconnected_at timestamptz,
  reconnect_count bigint NOT NULL DEFAULT 0,
  error_count bigint NOT NULL DEFAULT 0,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (tenant_id, session_name),
  CHECK ((auth_state IS NULL) = (auth_key_id IS NULL))
);
CREATE INDEX sessions_restore_idx ON sessions (session_name)
  WHERE auth_state IS NOT NULL AND is_active AND auto_connect;
CREATE TABLE session_events (
  sequence bigserial PRIMARY KEY,
  session_id uuid NOT NULL,
  tenant_id text NOT NULL,
  from_state text NOT NULL,
  to_state text NOT NULL,
  reason text NOT NULL,
  error text NOT NULL DEFAULT '',
  at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX session_events_session_idx ON session_events (session_id, sequence);
CREATE INDEX session_events_at_idx ON session_events (at);
)sql"},
      {2, "session leases, replicas and event notifications",
       R"sql(
CREATE SEQUENCE session_lease_tokens;
CREATE TABLE session_leases (
  session_id uuid PRIMARY KEY REFERENCES sessions (id) ON DELETE CASCADE,
  owner text NOT NULL,
  token bigint NOT NULL UNIQUE,
  acquired_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL
);
CREATE INDEX session_leases_owner_idx ON session_leases (owner);
CREATE TABLE session_replicas (
  replica_id text PRIMARY KEY,
  address text NOT NULL,
  started_at timestamptz NOT NULL DEFAULT now(),
  heartbeat_at timestamptz NOT NULL DEFAULT now()
);
CREATE FUNCTION session_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('session_events', NEW.sequence::text);
  RETURN NULL;
END $$;
CREATE TRIGGER session_events_notify AFTER INSERT ON session_events
  FOR EACH ROW EXECUTE FUNCTION session_events_notify();
)sql"},
      {3,
       "what WhatsApp ended a connection with, temporary bans, the phone's last sighting, the "
       "WhatsApp Web version last read",
       R"sql(
ALTER TABLE sessions
  ADD COLUMN failure_code integer NOT NULL DEFAULT 0,
  ADD COLUMN ban_code integer NOT NULL DEFAULT 0,
  ADD COLUMN ban_expires_at timestamptz,
  ADD COLUMN phone_last_seen_at timestamptz,
  ADD CONSTRAINT sessions_ban_only_while_banned
    CHECK (connection_status = 'BANNED' OR (ban_code = 0 AND ban_expires_at IS NULL));
CREATE TABLE wa_client_version (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  version text NOT NULL,
  source_url text NOT NULL,
  read_at timestamptz NOT NULL DEFAULT now()
);
)sql"},
      // Renewal writes one holder row per replica instead of one lease row per session. This is
      // the expand step (README "Deployment", the Migrations bullet: migrations only add):
      // replicas of the previous version keep running beside this one during a rolling update,
      // so their leases stay (holder NULL: judged by their own expires_at), `session_replicas`
      // and `session_leases.expires_at` stay, and this version keeps both up to date while a
      // previous-version replica is alive (RenewHolder). The contract release, one release
      // later, removes `session_replicas`, `session_leases.expires_at` and the trigger below,
      // when no replica of the previous version can run any more.
      //
      // The trigger: a replica of the previous version takes an expired lease over by setting
      // owner and token and leaving holder as it was. Such a row must not stay under a holder
      // whose replica does not own it (the holder's deletion would delete that live lease with
      // it, and this version would judge it by the wrong expiry): it is detached from the
      // holder, atomically with the takeover. This version always sets holder with owner.
      {4, "lease holders: one row per replica incarnation; leases reference it",
       R"sql(
CREATE TABLE lease_holders (
  holder bigserial PRIMARY KEY,
  replica_id text NOT NULL,
  address text NOT NULL,
  started_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL
);
CREATE INDEX lease_holders_replica_idx ON lease_holders (replica_id);
ALTER TABLE session_leases
  ADD COLUMN holder bigint REFERENCES lease_holders (holder) ON DELETE CASCADE;
CREATE INDEX session_leases_holder_idx ON session_leases (holder);
CREATE FUNCTION session_leases_detach_holder() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM lease_holders
                 WHERE holder = NEW.holder AND replica_id = NEW.owner) THEN
    NEW.holder := NULL;
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER session_leases_detach_holder BEFORE UPDATE OF token ON session_leases
  FOR EACH ROW WHEN (NEW.holder IS NOT NULL AND NEW.holder = OLD.holder)
  EXECUTE FUNCTION session_leases_detach_holder();
)sql"},
      // Sequences in commit order. A sequence is taken when a row is inserted, but transactions
      // commit in their own order: with concurrent writers (CreateSession beside the transition
      // writer, several replicas) an event could become visible after one with a larger
      // sequence, and a watcher or a client resuming after_sequence past it would never see
      // it. Each event-writing transaction now takes one transaction-scoped advisory lock
      // ('wase' 'evts') before its event is numbered, and holds it until it commits, so the
      // next one numbers its events after this one's are visible. The numbers come from a
      // sequence of their own that goes on where the column's left off (the column default's
      // value is replaced, so the numbering stays without gaps); the table is locked while
      // that is read, so no insert slips between. docs/architecture.md, "The event log,
      // LISTEN/NOTIFY and WatchSessionEvents".
      {5, "session events numbered in commit order", R"sql(
LOCK TABLE session_events IN SHARE ROW EXCLUSIVE MODE;
CREATE SEQUENCE session_events_order;
SELECT setval('session_events_order', GREATEST(
  COALESCE((SELECT max(sequence) FROM session_events), 0),
  COALESCE(pg_sequence_last_value(pg_get_serial_sequence('session_events', 'sequence')::regclass), 0)
) + 1, false);
CREATE FUNCTION session_events_number() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_advisory_xact_lock(2002875237, 1702261875);
  NEW.sequence := nextval('session_events_order');
  RETURN NEW;
END $$;
CREATE TRIGGER session_events_number BEFORE INSERT ON session_events
  FOR EACH ROW EXECUTE FUNCTION session_events_number();
)sql"},
      // A linked device's Signal state (session-service/src/session/pg_signal_store.h): records
      // holding private or chain keys sealed (seal_key names the sealing key), identities as
      // they are; all of it goes with its session.
      {6, "Signal state: pre-keys, sessions, identities, sender keys", R"sql(
CREATE TABLE signal_pre_keys (
  session_id uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
  key_id integer NOT NULL,
  seal_key text NOT NULL,
  record bytea NOT NULL,
  PRIMARY KEY (session_id, key_id)
);
CREATE TABLE signal_signed_pre_keys (
  session_id uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
  key_id integer NOT NULL,
  seal_key text NOT NULL,
  record bytea NOT NULL,
  PRIMARY KEY (session_id, key_id)
);
CREATE TABLE signal_sessions (
  session_id uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
  peer text NOT NULL,
  device integer NOT NULL,
  seal_key text NOT NULL,
  record bytea NOT NULL,
  PRIMARY KEY (session_id, peer, device)
);
CREATE TABLE signal_identities (
  session_id uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
  peer text NOT NULL,
  device integer NOT NULL,
  identity bytea NOT NULL,
  PRIMARY KEY (session_id, peer, device)
);
CREATE TABLE signal_sender_keys (
  session_id uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
  group_id text NOT NULL,
  sender text NOT NULL,
  device integer NOT NULL,
  seal_key text NOT NULL,
  record bytea NOT NULL,
  PRIMARY KEY (session_id, group_id, sender, device)
);
CREATE TABLE signal_pre_key_ids (
  session_id uuid PRIMARY KEY REFERENCES sessions (id) ON DELETE CASCADE,
  next_id integer NOT NULL
);
)sql"},
      {7, "messages: what a session received, stored before it is acknowledged", R"sql(
CREATE SEQUENCE messages_order;
CREATE TABLE messages (
  session_id uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
  sequence bigint NOT NULL DEFAULT nextval('messages_order'),
  chat_jid text NOT NULL,
  sender_jid text NOT NULL,
  message_id text NOT NULL,
  from_me boolean NOT NULL,
  kind text NOT NULL,
  sent_at timestamptz NOT NULL,
  stored_at timestamptz NOT NULL DEFAULT now(),
  seal_key text NOT NULL,
  body bytea NOT NULL,
  PRIMARY KEY (session_id, chat_jid, sender_jid, message_id)
);
CREATE INDEX messages_by_sequence ON messages (sequence);
CREATE INDEX messages_by_chat ON messages (session_id, chat_jid, sent_at);
)sql"},
      // Sent messages beside received ones, and a message log a watch can resume: the outbox
      // is the rows still PENDING (or owing a read receipt), in `queued` order; every insert
      // and every change of status (status_at; pruning goes by it) numbers the row again from
      // messages_order, in commit order as session events are (migration 5, with a lock of
      // its own, 'wase' 'msgs'), and notifies `session_messages` with "<sequence> <session>".
      // A watcher resuming after a sequence thus sees every message that changed since, in
      // its latest state. session-service/src/session/pg_message_store.h. The payload ends
      // in " outbox" when the row is for the sender to act on (PENDING, or a read receipt owed).
      {8, "sent messages, statuses and the message log", R"sql(
ALTER TABLE messages
  ADD COLUMN status text NOT NULL DEFAULT 'RECEIVED',
  ADD COLUMN status_at timestamptz NOT NULL DEFAULT now(),
  ADD COLUMN failure text,
  ADD COLUMN client_message_id text,
  ADD COLUMN request_digest bytea,
  ADD COLUMN deadline timestamptz,
  ADD COLUMN read_receipt_due boolean NOT NULL DEFAULT false,
  ADD COLUMN queued bigint NOT NULL DEFAULT nextval('messages_order');
CREATE UNIQUE INDEX messages_by_client_id ON messages (session_id, client_message_id)
  WHERE client_message_id IS NOT NULL;
CREATE INDEX messages_outbox ON messages (session_id, queued)
  WHERE status = 'PENDING' OR read_receipt_due;
CREATE INDEX messages_by_id ON messages (session_id, message_id);
CREATE INDEX messages_by_status_at ON messages (status_at);
CREATE TABLE messages_pruned (
  only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
  through bigint NOT NULL
);
CREATE FUNCTION messages_number() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND NEW.status IS NOT DISTINCT FROM OLD.status THEN
    RETURN NEW;
  END IF;
  PERFORM pg_advisory_xact_lock(2002875237, 1836279667);
  NEW.sequence := nextval('messages_order');
  RETURN NEW;
END $$;
CREATE TRIGGER messages_number BEFORE INSERT OR UPDATE ON messages
  FOR EACH ROW EXECUTE FUNCTION messages_number();
CREATE FUNCTION messages_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('session_messages', NEW.sequence::text || ' ' || NEW.session_id::text ||
    CASE WHEN NEW.status = 'PENDING' OR NEW.read_receipt_due THEN ' outbox' ELSE '' END);
  RETURN NULL;
END $$;
CREATE TRIGGER messages_notify_insert AFTER INSERT ON messages
  FOR EACH ROW EXECUTE FUNCTION messages_notify();
CREATE TRIGGER messages_notify_update AFTER UPDATE ON messages
  FOR EACH ROW WHEN (OLD.sequence IS DISTINCT FROM NEW.sequence)
  EXECUTE FUNCTION messages_notify();
)sql"},
      {9, "messages in trouble: undecryptable, failed sends", R"sql(
CREATE INDEX messages_trouble ON messages (status_at, session_id)
  WHERE status IN ('UNDECRYPTABLE', 'FAILED');
)sql"},
  };
  return *migrations;
}

// Migration 5's lock on numbering events, taken first by every transaction that writes events
// (before any row lock, so two such transactions cannot deadlock over it and a row); its
// trigger takes it again, which costs nothing once held.
constexpr const char* kEventOrderLock = "SELECT pg_advisory_xact_lock(2002875237, 1702261875)";

absl::StatusOr<std::pair<SessionRecord, EventRecord>> PgSessionStore::Create(
    const SessionRecord& rec, const std::string& lease_owner, int64_t lease_holder,
    const ImportedPreKeys* pre_keys) {
  std::pair<SessionRecord, EventRecord> out;
  const absl::Status created = pool_.Transact("create session", [&](pqxx::work& w) {
    w.exec(kEventOrderLock);
    std::optional<std::string> key_id;
    std::optional<std::string>
        blob_hex;  // bytea travels as hex text: libpqxx 6 has no nullable binary parameter
    if (rec.credentials) {
      key_id = rec.credentials->key_id;
      blob_hex = HexEncode(rec.credentials->blob);
    }
    auto r = PgOne(w.exec_params(
        absl::StrCat(
            "INSERT INTO sessions (tenant_id, session_name, phone_number, device_jid, account_name,"
            " owner_email, is_active, auto_connect, auth_key_id, auth_state, connection_status,"
            " status_reason) VALUES ($1, $2, NULLIF($3, ''), NULLIF($4, ''), $5, $6, $7, $8, $9,"
            " decode($10, 'hex'), 'DISCONNECTED', 'CREATED') RETURNING ",
            kSessionColumns),
        rec.tenant_id, rec.session_name, rec.phone_number, rec.device_jid, rec.account_name,
        rec.owner_email, rec.is_active, rec.auto_connect, key_id, blob_hex));
    out.first = ToRecord(r);
    auto e = PgOne(w.exec_params(
        absl::StrCat(
            "INSERT INTO session_events (session_id, tenant_id, from_state, to_state, reason)"
            " VALUES ($1::uuid, $2, 'UNSPECIFIED', 'DISCONNECTED', 'CREATED') RETURNING ",
            kEventColumns),
        out.first.id, out.first.tenant_id));
    out.second = ToEvent(e);
    if (!lease_owner.empty()) {
      w.exec_params(TakeLeasesSql("SELECT $3::uuid AS id", true), lease_owner, lease_holder,
                    out.first.id);
      out.first.owner = lease_owner;
      if (pre_keys) {
        for (const auto& [id, sealed] : pre_keys->keys) {
          w.exec_params(
              "INSERT INTO signal_pre_keys (session_id, key_id, seal_key, record)"
              " VALUES ($1::uuid, $2, $3, decode($4, 'hex'))",
              out.first.id, static_cast<int64_t>(id), sealed.key_id, HexEncode(sealed.blob));
        }
        w.exec_params("INSERT INTO signal_pre_key_ids (session_id, next_id) VALUES ($1::uuid, $2)",
                      out.first.id, static_cast<int64_t>(pre_keys->next_id));
      }
    }
  });
  if (absl::IsAlreadyExists(created)) {
    // The one unique key a new row can hit; say it in the caller's words, not the database's.
    return absl::AlreadyExistsError(
        absl::StrCat("tenant ", rec.tenant_id, " already has a session named ", rec.session_name));
  }
  WAS_RETURN_IF_ERROR(created);
  return out;
}

template <class... Args>
absl::StatusOr<SessionRecord> PgSessionStore::SelectOne(const char* what,
                                                        const std::string& not_found,
                                                        const std::string& sql,
                                                        const Args&... args) {
  std::optional<SessionRecord> rec;
  WAS_RETURN_IF_ERROR(pool_.Run(what, [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    auto r = n.exec_params(sql, args...);
    if (!r.empty()) rec = ToRecord(r[0]);
  }));
  if (!rec) return absl::NotFoundError(not_found);
  return *rec;
}

absl::StatusOr<SessionRecord> PgSessionStore::Get(const std::string& id) {
  WAS_RETURN_IF_ERROR(CheckSessionId(id));
  return SelectOne("get session", absl::StrCat("no session ", id),
                   absl::StrCat("SELECT ", kSessionColumns, " FROM sessions WHERE id = $1::uuid"),
                   id);
}

absl::StatusOr<SessionRecord> PgSessionStore::GetByName(const std::string& tenant_id,
                                                        const std::string& session_name) {
  return SelectOne("get session by name",
                   absl::StrCat("no session \"", session_name, "\" of tenant \"", tenant_id, "\""),
                   absl::StrCat("SELECT ", kSessionColumns,
                                " FROM sessions WHERE tenant_id = $1 AND session_name = $2"),
                   tenant_id, session_name);
}

absl::StatusOr<SessionPage> PgSessionStore::List(const SessionFilter& filter, int page_size,
                                                 const std::string& page_token) {
  if (!page_token.empty()) WAS_RETURN_IF_ERROR(CheckSessionId(page_token));
  SessionPage page;
  WAS_RETURN_IF_ERROR(pool_.Run("list sessions", [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    auto r = n.exec_params(
        absl::StrCat("SELECT ", kSessionColumns,
                     " FROM sessions WHERE ($1 = '' OR tenant_id = $1)"
                     " AND ($2 = '{}' OR connection_status = ANY($2::text[]))"
                     " AND ($3 = '' OR id > NULLIF($3, '')::uuid) ORDER BY id LIMIT $4"),
        filter.tenant_id, StatesArray(filter.states), page_token, page_size + 1);
    for (const auto& row : r) page.sessions.push_back(ToRecord(row));
  }));
  if (static_cast<int>(page.sessions.size()) > page_size) {
    page.sessions.pop_back();
    page.next_page_token = page.sessions.back().id;
  }
  return page;
}

absl::StatusOr<std::vector<SessionRecord>> PgSessionStore::ListRestorable() {
  return SelectSessions("list restorable sessions",
                        "session_name = 'primary' AND auth_state IS NOT NULL AND is_active"
                        " AND auto_connect");
}

absl::StatusOr<std::vector<SessionRecord>> PgSessionStore::ListLive() {
  return SelectSessions("list live sessions",
                        "connection_status IN ('QR_PENDING', 'CONNECTING', 'CONNECTED')");
}

absl::StatusOr<std::vector<SessionRecord>> PgSessionStore::SelectSessions(const char* what,
                                                                          const char* where) {
  std::vector<SessionRecord> out;
  WAS_RETURN_IF_ERROR(pool_.Run(what, [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    auto r = n.exec(
        absl::StrCat("SELECT ", kSessionColumns, " FROM sessions WHERE ", where, " ORDER BY id"));
    for (const auto& row : r) out.push_back(ToRecord(row));
  }));
  return out;
}

absl::StatusOr<std::vector<SessionRecord>> PgSessionStore::GetMany(
    const std::vector<std::string>& ids) {
  for (const auto& id : ids) WAS_RETURN_IF_ERROR(CheckSessionId(id));
  std::vector<SessionRecord> out;
  WAS_RETURN_IF_ERROR(pool_.Run("get sessions", [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    auto r = n.exec_params(
        absl::StrCat("SELECT ", kSessionColumns, " FROM sessions WHERE id = ANY($1::uuid[])"),
        absl::StrCat("{", absl::StrJoin(ids, ","), "}"));
    for (const auto& row : r) out.push_back(ToRecord(row));
  }));
  return out;
}

absl::StatusOr<SessionRecord> PgSessionStore::Update(const std::string& id,
                                                     const SessionUpdate& u) {
  WAS_RETURN_IF_ERROR(CheckSessionId(id));
  return SelectOne("update session", absl::StrCat("no session ", id),
                   absl::StrCat("UPDATE sessions SET auto_connect = COALESCE($2, auto_connect),"
                                " is_active = COALESCE($3, is_active),"
                                " account_name = COALESCE($4, account_name),"
                                " owner_email = COALESCE($5, owner_email), updated_at = now()"
                                " WHERE id = $1::uuid RETURNING ",
                                kSessionColumns),
                   id, u.auto_connect, u.is_active, u.account_name, u.owner_email);
}

namespace {

// Runs the prepared statement `name`, defined on the transaction's connection as `sql` when it
// is not yet (libpqxx defines it once per connection and has the server parse and plan it on
// first use; a replaced connection defines it again).
template <typename... Args>
pqxx::result ExecPrepared(pqxx::work& w, const char* name, const std::string& sql, Args&&... args) {
  // A no-op when already defined with this text: libpqxx 6 (Debian 12's) records the
  // definition and prepares it on the server at first use. libpqxx 7 prepares at once and
  // would refuse a second definition; moving to it means remembering what is defined.
  w.conn().prepare(name, sql);
  return w.exec_prepared(name, std::forward<Args>(args)...);
}

// FOR SHARE OF l holds off a takeover until the transition commits: one deletes the lease row
// (its holder's deletion cascades to it) or updates it (own_too, an expired previous-version
// lease, or a previous-version replica's takeover), and all wait for the lock. The holder row is
// not locked, so renewals go on meanwhile.
const std::string& TransitionLeaseSql() {
  static const auto* sql = new std::string(
      absl::StrCat("SELECT l.token, COALESCE(", kLeaseIsLive,
                   ", false) FROM session_leases l LEFT JOIN lease_holders h"
                   " ON h.holder = l.holder WHERE l.session_id = $1::uuid FOR SHARE OF l"));
  return *sql;
}

const std::string& TransitionUpdateSql() {
  static const auto* sql = new std::string(
      "UPDATE sessions SET connection_status = $2, status_reason = $3,"
      " last_error = CASE WHEN $4 = '' THEN (CASE WHEN $2 = 'CONNECTED' THEN NULL ELSE "
      "last_error END) ELSE $4 END,"
      " last_connected_at = CASE WHEN $5 THEN to_timestamp($7::double precision / 1000000)"
      " ELSE last_connected_at END,"
      " last_disconnected_at = CASE WHEN $6 THEN to_timestamp($7::double precision / 1000000)"
      " ELSE last_disconnected_at END,"
      " reconnect_count = reconnect_count + $8, error_count = error_count + $9,"
      " auth_state = CASE WHEN $11::text IS NOT NULL THEN decode($12, 'hex')"
      "   WHEN $10 THEN NULL ELSE auth_state END,"
      " auth_key_id = CASE WHEN $11::text IS NOT NULL THEN $11 WHEN $10 THEN NULL"
      "   ELSE auth_key_id END,"
      " phone_number = COALESCE($13, phone_number), device_jid = COALESCE($14, device_jid),"
      " failure_code = CASE WHEN $5 THEN 0 WHEN $15 > 0 THEN $15 ELSE failure_code END,"
      " ban_code = CASE WHEN $2 = 'BANNED' THEN $16 ELSE 0 END,"
      " ban_expires_at = CASE WHEN $2 = 'BANNED' THEN"
      "   to_timestamp($17::bigint::double precision / 1000000) END,"
      " updated_at = now() WHERE id = $1::uuid RETURNING id");
  return *sql;
}

const std::string& TransitionEventSql() {
  static const auto* sql = new std::string(
      absl::StrCat("INSERT INTO session_events (session_id, tenant_id, from_state, to_state,"
                   " reason, error, at) VALUES ($1::uuid, $2, $3, $4, $5, $6,"
                   " to_timestamp($7::double precision / 1000000)) RETURNING ",
                   kEventColumns));
  return *sql;
}

absl::Status FencedError(const Transition& t) {
  return FencedStatus(absl::StrCat("session ", t.session_id,
                                   " is leased by another replica (fencing token ", t.lease_token,
                                   " is stale)"));
}

// One transition inside `w`: its event, NOT_FOUND or fenced. A statement that fails throws (and
// aborts the transaction).
absl::StatusOr<EventRecord> RecordIn(pqxx::work& w, const Transition& t) {
  const int64_t at = absl::ToUnixMicros(t.at);
  auto lease = ExecPrepared(w, "transition_lease", TransitionLeaseSql(), t.session_id);
  const bool fenced = t.lease_token != 0
                          ? lease.empty() || lease[0][0].as<int64_t>() != t.lease_token
                          : !lease.empty() && lease[0][1].as<bool>();
  if (fenced) return FencedError(t);
  bool found = true;
  if (t.delete_session) {
    found = !w.exec_params("DELETE FROM sessions WHERE id = $1::uuid RETURNING id", t.session_id)
                 .empty();
  } else {
    const bool connected = t.to == v1::SESSION_STATE_CONNECTED;
    const bool left_connected =
        t.from == v1::SESSION_STATE_CONNECTED && t.to != v1::SESSION_STATE_CONNECTED;
    std::optional<std::string> key_id, blob_hex, phone, jid;
    if (t.set_credentials) {
      key_id = t.set_credentials->sealed.key_id;
      blob_hex = HexEncode(t.set_credentials->sealed.blob);
      phone = t.set_credentials->phone_number;
      jid = t.set_credentials->device_jid;
    }
    std::optional<std::string> ban_expires_us;
    if (t.ban_expires_at) ban_expires_us = std::to_string(absl::ToUnixMicros(*t.ban_expires_at));
    found = !ExecPrepared(w, "transition_update", TransitionUpdateSql(), t.session_id,
                          StateName(t.to), ReasonName(t.reason), t.error, connected, left_connected,
                          at, t.count_reconnect ? 1 : 0, t.count_error ? 1 : 0, t.clear_credentials,
                          key_id, blob_hex, phone, jid, t.failure_code, t.ban_code, ban_expires_us)
                 .empty();
  }
  if (!found) return absl::NotFoundError(absl::StrCat("no session ", t.session_id));
  return ToEvent(
      PgOne(ExecPrepared(w, "transition_event", TransitionEventSql(), t.session_id, t.tenant_id,
                         StateName(t.from), StateName(t.to), ReasonName(t.reason), t.error, at)));
}

}  // namespace

absl::StatusOr<EventRecord> PgSessionStore::RecordTransition(const Transition& t) {
  WAS_ASSIGN_OR_RETURN(auto answers, RecordTransitions({&t, 1}));
  return std::move(answers.front());
}

absl::StatusOr<std::vector<absl::StatusOr<EventRecord>>> PgSessionStore::RecordTransitions(
    absl::Span<const Transition> batch) {
  std::vector<absl::StatusOr<EventRecord>> answers;
  WAS_RETURN_IF_ERROR(pool_.Transact("record transition", [&](pqxx::work& w) {
    w.exec(kEventOrderLock);
    answers.reserve(batch.size());
    for (const Transition& t : batch) {
      if (auto st = CheckSessionId(t.session_id); !st.ok()) {
        answers.emplace_back(std::move(st));
      } else {
        answers.push_back(RecordIn(w, t));
      }
    }
  }));
  return answers;
}

absl::Status PgSessionStore::RecordPhoneSightings(
    const std::vector<std::pair<std::string, absl::Time>>& sightings) {
  std::vector<std::string> ids;
  std::vector<int64_t> micros;
  for (const auto& [id, at] : sightings) {
    WAS_RETURN_IF_ERROR(CheckSessionId(id));
    ids.push_back(id);
    micros.push_back(absl::ToUnixMicros(at));
  }
  return pool_.Run("record phone sightings", [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    n.exec_params(
        "UPDATE sessions s SET phone_last_seen_at = GREATEST(s.phone_last_seen_at,"
        " to_timestamp(v.us::double precision / 1000000)) FROM (SELECT unnest($1::uuid[]) AS id,"
        " unnest($2::bigint[]) AS us) v WHERE s.id = v.id",
        PgArray(ids), PgArray(micros));
  });
}

absl::StatusOr<std::vector<SessionRecord>> PgSessionStore::ListSealedNotUnder(
    const std::string& key_id, int limit) {
  std::vector<SessionRecord> out;
  WAS_RETURN_IF_ERROR(pool_.Run("list sealed credentials", [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    auto r = n.exec_params(absl::StrCat("SELECT ", kSessionColumns,
                                        " FROM sessions WHERE auth_key_id IS NOT NULL"
                                        " AND auth_key_id <> $1 ORDER BY id LIMIT $2"),
                           key_id, limit);
    for (const auto& row : r) out.push_back(ToRecord(row));
  }));
  return out;
}

absl::StatusOr<bool> PgSessionStore::ReplaceSealed(const std::string& id,
                                                   const SealedCredentials& expected,
                                                   const SealedCredentials& replacement) {
  WAS_RETURN_IF_ERROR(CheckSessionId(id));
  bool replaced = false;
  WAS_RETURN_IF_ERROR(pool_.Run("re-seal credentials", [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    auto r = n.exec_params(
        "UPDATE sessions SET auth_key_id = $4, auth_state = decode($5, 'hex')"
        " WHERE id = $1::uuid AND auth_key_id = $2 AND auth_state = decode($3, 'hex')",
        id, expected.key_id, HexEncode(expected.blob), replacement.key_id,
        HexEncode(replacement.blob));
    replaced = r.affected_rows() == 1;
  }));
  return replaced;
}

absl::StatusOr<std::vector<EventRecord>> PgSessionStore::EventsAfter(int64_t after,
                                                                     const SessionFilter& filter,
                                                                     int limit) {
  if (!filter.session_id.empty()) WAS_RETURN_IF_ERROR(CheckSessionId(filter.session_id));
  std::vector<EventRecord> out;
  WAS_RETURN_IF_ERROR(pool_.Run("read events", [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    auto r =
        n.exec_params(absl::StrCat("SELECT ", kEventColumns,
                                   " FROM session_events WHERE sequence > $1"
                                   " AND ($2 = '' OR session_id = NULLIF($2, '')::uuid)"
                                   " AND ($3 = '' OR tenant_id = $3) ORDER BY sequence LIMIT $4"),
                      after, filter.session_id, filter.tenant_id, limit);
    for (const auto& row : r) out.push_back(ToEvent(row));
  }));
  return out;
}

absl::StatusOr<int64_t> PgSessionStore::LatestSequence() {
  return ScalarInt64("latest sequence", "SELECT COALESCE(max(sequence), 0) FROM session_events");
}

absl::StatusOr<int64_t> PgSessionStore::OldestSequence() {
  return ScalarInt64("oldest sequence", "SELECT COALESCE(min(sequence), 0) FROM session_events");
}

absl::StatusOr<int64_t> PgSessionStore::ScalarInt64(const char* what, const char* sql) {
  int64_t value = 0;
  WAS_RETURN_IF_ERROR(pool_.Run(what, [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    value = n.exec1(sql)[0].as<int64_t>();
  }));
  return value;
}

absl::StatusOr<std::vector<std::pair<v1::SessionState, int64_t>>> PgSessionStore::CountByState() {
  std::vector<std::pair<v1::SessionState, int64_t>> out;
  WAS_RETURN_IF_ERROR(pool_.Run("count sessions", [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    auto r = n.exec("SELECT connection_status, count(*) FROM sessions GROUP BY 1 ORDER BY 1");
    for (const auto& row : r)
      out.emplace_back(StateFromName(row[0].as<std::string>()), row[1].as<int64_t>());
  }));
  return out;
}

absl::StatusOr<int64_t> PgSessionStore::PruneEventsBefore(absl::Time cutoff, int batch) {
  int64_t deleted = 0;
  WAS_RETURN_IF_ERROR(pool_.Run("prune events", [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    auto r = n.exec_params(
        "DELETE FROM session_events WHERE sequence IN (SELECT sequence FROM session_events"
        " WHERE at < to_timestamp($1::double precision / 1000000) ORDER BY sequence LIMIT $2)",
        absl::ToUnixMicros(cutoff), batch);
    deleted = r.affected_rows();
  }));
  return deleted;
}

absl::StatusOr<absl::Duration> PgSessionStore::Ping() { return pool_.Ping(); }

bool IsFenced(const absl::Status& status) { return status.GetPayload(kFencedPayload).has_value(); }

absl::Status FencedStatus(std::string_view message) {
  absl::Status st = absl::FailedPreconditionError(Sv(message));
  st.SetPayload(kFencedPayload, absl::Cord("1"));
  return st;
}

absl::StatusOr<int64_t> PgSessionStore::StartHolder(const ReplicaInfo& me, absl::Duration ttl) {
  if (ttl > absl::ZeroDuration()) lease_ttl_us_ = absl::ToInt64Microseconds(ttl);
  int64_t holder = 0;
  WAS_RETURN_IF_ERROR(pool_.Run("start lease holder", [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    // Expand step: while a replica of the previous version is alive (another replica id than
    // this one's), the heartbeat it reads is written at once, so it counts this replica and
    // can forward calls here before the first renewal.
    auto r = PgOne(n.exec_params(
        absl::StrCat("WITH started AS (INSERT INTO lease_holders (replica_id, address, expires_at)"
                     " VALUES ($1, $2, now() + ",
                     IntervalOf(3), ") RETURNING holder, replica_id, address), beat AS (",
                     BeatSql(absl::StrCat("SELECT replica_id, address FROM started WHERE EXISTS (",
                                          PreviousVersionReplicas(3), " AND r.replica_id <> $1)")),
                     ") SELECT holder FROM started"),
        me.id, me.address, absl::ToInt64Microseconds(ttl)));
    holder = r[0].as<int64_t>();
  }));
  return holder;
}

absl::StatusOr<SessionStore::HolderState> PgSessionStore::RenewHolder(int64_t holder,
                                                                      absl::Duration ttl) {
  if (ttl > absl::ZeroDuration()) lease_ttl_us_ = absl::ToInt64Microseconds(ttl);
  std::optional<HolderState> out;
  WAS_RETURN_IF_ERROR(pool_.Run("renew lease holder", [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    // One statement, one round trip. It writes the holder row and reads the lease rows
    // (through session_leases_holder_idx): the aggregate always yields one row, so it answers
    // one row exactly when the holder row still exists. Expand step (removed by the contract
    // release): it also tells whether a replica of the previous version is alive, and only
    // then writes what that replica reads, the expiry of each of this holder's leases (so it
    // does not take them) and this replica's heartbeat in session_replicas (so it counts this
    // replica and forwards calls here). Otherwise those statements write no row. (This
    // replica's own heartbeat row never counts: its holder may have lapsed before this renewal,
    // as the statement's snapshot sees it.)
    auto r = n.exec_params(
        absl::StrCat(
            "WITH renewed AS (UPDATE lease_holders SET expires_at = now() + ", IntervalOf(2),
            " WHERE holder = $1 RETURNING replica_id, address, expires_at),"
            " mixed AS (SELECT EXISTS (",
            PreviousVersionReplicas(2),
            " AND r.replica_id NOT IN (SELECT replica_id FROM renewed)) AS previous_version),"
            " held AS (SELECT count(*) AS leases, COALESCE(sum(token), 0)::bigint AS token_sum"
            " FROM session_leases WHERE holder = $1),"
            " refreshed AS (UPDATE session_leases l SET expires_at = renewed.expires_at"
            " FROM renewed, mixed WHERE l.holder = $1 AND mixed.previous_version),"
            " beat AS (",
            BeatSql("SELECT replica_id, address FROM renewed, mixed WHERE mixed.previous_version"),
            ") SELECT held.leases, held.token_sum, mixed.previous_version"
            " FROM renewed, held, mixed"),
        holder, absl::ToInt64Microseconds(ttl));
    if (!r.empty()) {
      out = HolderState{r[0][0].as<int64_t>(), r[0][1].as<int64_t>(), r[0][2].as<bool>()};
    }
  }));
  if (!out) {
    return absl::NotFoundError(
        absl::StrCat("lease holder ", holder, " is gone: it expired and its leases were freed"));
  }
  return *out;
}

absl::StatusOr<std::vector<int64_t>> PgSessionStore::HeldTokens(int64_t holder) {
  std::vector<int64_t> out;
  WAS_RETURN_IF_ERROR(pool_.Run("read held lease tokens", [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    auto r =
        n.exec_params("SELECT token FROM session_leases WHERE holder = $1 ORDER BY token", holder);
    for (const auto& row : r) out.push_back(row[0].as<int64_t>());
  }));
  return out;
}

absl::Status PgSessionStore::EndHolder(int64_t holder) {
  return pool_.Run("end lease holder", [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    // Expand step: the heartbeat the previous version reads goes too (as that version's own
    // leaving does), so that no replica counts this one any more.
    n.exec_params(
        "WITH ended AS (DELETE FROM lease_holders WHERE holder = $1 RETURNING replica_id)"
        " DELETE FROM session_replicas WHERE replica_id IN (SELECT replica_id FROM ended)",
        holder);
    n.exec_params("SELECT pg_notify($1, $2)", std::string(kLeasesChannel), std::to_string(holder));
  });
}

absl::StatusOr<std::vector<Lease>> PgSessionStore::AcquireLeases(
    const std::vector<std::string>& ids, const std::string& owner, int64_t holder) {
  for (const auto& id : ids) WAS_RETURN_IF_ERROR(CheckSessionId(id));
  std::vector<Lease> out;
  if (ids.empty()) return out;
  WAS_RETURN_IF_ERROR(pool_.Run("acquire leases", [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    n.exec(kDeleteExpiredHolders);
    out = ToLeases(n.exec_params(
        TakeLeasesSql("SELECT id FROM sessions WHERE id = ANY($3::uuid[]) ORDER BY id", true),
        owner, holder, PgArray(ids)));
  }));
  return out;
}

absl::StatusOr<std::vector<Lease>> PgSessionStore::ClaimOrphans(const std::string& owner,
                                                                int64_t holder, int limit) {
  std::vector<Lease> out;
  if (limit <= 0) return out;
  WAS_RETURN_IF_ERROR(pool_.Run("claim orphaned sessions", [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    n.exec(kDeleteExpiredHolders);
    // Once expired holders are gone, every lease row left with a holder is live (or expired
    // since: then it waits for the next claim); one without (a previous-version replica's,
    // expand step) is live while its own expiry is ahead.
    out = ToLeases(n.exec_params(
        TakeLeasesSql(absl::StrCat("SELECT id FROM sessions WHERE ", kWantsSocket,
                                   " AND NOT EXISTS (SELECT 1 FROM session_leases l WHERE"
                                   " l.session_id = sessions.id AND (l.holder IS NOT NULL"
                                   " OR l.expires_at > now())) ORDER BY updated_at LIMIT $3"),
                      false),
        owner, holder, limit));
  }));
  return out;
}

absl::StatusOr<SessionStore::WantedCounts> PgSessionStore::CountWanted() {
  WantedCounts out;
  WAS_RETURN_IF_ERROR(pool_.Run("count sessions that want a socket", [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    auto r = n.exec1(absl::StrCat("SELECT count(*), count(*) FILTER (WHERE NOT ", HasLiveLease(),
                                  ") FROM sessions WHERE ", kWantsSocket));
    out.wanted = r[0].as<int64_t>();
    out.orphaned = r[1].as<int64_t>();
  }));
  return out;
}

absl::Status PgSessionStore::ReleaseLeases(const std::vector<int64_t>& tokens) {
  if (tokens.empty()) return absl::OkStatus();
  return pool_.Run("release leases", [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    n.exec_params("DELETE FROM session_leases WHERE token = ANY($1::bigint[])", PgArray(tokens));
  });
}

absl::StatusOr<std::optional<ReplicaInfo>> PgSessionStore::LeaseOwner(const std::string& id) {
  WAS_RETURN_IF_ERROR(CheckSessionId(id));
  std::optional<ReplicaInfo> out;
  WAS_RETURN_IF_ERROR(pool_.Run("read lease owner", [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    // The address comes from the lease's holder, or for a previous-version replica's lease
    // (expand step) from its heartbeat row.
    auto r = n.exec_params(
        absl::StrCat("SELECT l.owner, COALESCE(h.address, r.address, '') FROM session_leases l"
                     " LEFT JOIN lease_holders h ON h.holder = l.holder LEFT JOIN"
                     " session_replicas r ON l.holder IS NULL AND r.replica_id = l.owner"
                     " WHERE l.session_id = $1::uuid AND ",
                     kLeaseIsLive),
        id);
    if (!r.empty()) out = ReplicaInfo{r[0][0].as<std::string>(), r[0][1].as<std::string>()};
  }));
  return out;
}

absl::StatusOr<std::vector<ReplicaInfo>> PgSessionStore::LiveReplicas() {
  std::vector<ReplicaInfo> out;
  WAS_RETURN_IF_ERROR(pool_.Run("list replicas", [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    // A replica restarted under the same id may have two live holders for a while: its newest
    // one tells where it is now. Expand step: with them, the live replicas of the previous
    // version (none of which has a holder), so that shares and forwarding count everyone.
    auto r = n.exec_params(
        absl::StrCat("SELECT replica_id, address FROM (SELECT DISTINCT ON (replica_id)"
                     " replica_id, address FROM lease_holders WHERE expires_at > now()"
                     " ORDER BY replica_id, holder DESC) AS holders UNION ALL ",
                     PreviousVersionReplicas(1), " ORDER BY replica_id"),
        lease_ttl_us_.load());
    for (const auto& row : r) out.push_back({row[0].as<std::string>(), row[1].as<std::string>()});
  }));
  return out;
}

absl::StatusOr<std::vector<EventRecord>> PgSessionStore::EventsBySequence(
    const std::vector<int64_t>& sequences) {
  std::vector<EventRecord> out;
  if (sequences.empty()) return out;
  WAS_RETURN_IF_ERROR(pool_.Run("read events by sequence", [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    auto r = n.exec_params(absl::StrCat("SELECT ", kEventColumns,
                                        " FROM session_events WHERE sequence = ANY($1::bigint[])"
                                        " ORDER BY sequence"),
                           PgArray(sequences));
    for (const auto& row : r) out.push_back(ToEvent(row));
  }));
  return out;
}

}  // namespace wasentinel::session
