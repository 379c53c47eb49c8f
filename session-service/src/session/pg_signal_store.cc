#include "pg_signal_store.h"

#include <pqxx/pqxx>

#include "absl/strings/str_cat.h"
#include "store.h"
#include "wasentinel/common/bytes.h"
#include "wasentinel/common/status_macros.h"

namespace wasentinel::session {
namespace {

using signal::Change;

Bytes BlobOf(const pqxx::field& f) {
  pqxx::binarystring b(f);
  return Bytes(b.data(), b.data() + b.size());
}

absl::StatusOr<Bytes> Opened(const Sealer& sealer, const pqxx::row& row, int key_col, int blob_col,
                             std::string_view what) {
  auto open = sealer.Open(row[key_col].as<std::string>(), BlobOf(row[blob_col]));
  if (!open.ok()) {
    return absl::Status(open.status().code(),
                        absl::StrCat("a sealed Signal ", Sv(what), ": ", open.status().message()));
  }
  return open;
}

}  // namespace

absl::Status CheckLease(pqxx::transaction_base& tx, const std::string& session_id,
                        int64_t lease_token) {
  auto r = tx.exec_params("SELECT token FROM session_leases WHERE session_id = $1::uuid FOR SHARE",
                          session_id);
  if (r.empty() || r[0][0].as<int64_t>() != lease_token) {
    return FencedStatus(absl::StrCat("session ", session_id,
                                     " is leased by another replica (fencing token ", lease_token,
                                     " is stale): nothing is written"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<Bytes>> LoadSignalPreKey(pqxx::transaction_base& tx,
                                                      const Sealer& sealer,
                                                      const std::string& session_id, uint32_t id) {
  WAS_RETURN_IF_ERROR(CheckSessionId(session_id));
  auto r = tx.exec_params(
      "SELECT key_id, seal_key, record FROM signal_pre_keys WHERE session_id = $1::uuid"
      " AND key_id = $2",
      session_id, static_cast<int64_t>(id));
  if (r.empty()) return std::nullopt;
  WAS_ASSIGN_OR_RETURN(Bytes record, Opened(sealer, r[0], 1, 2, "pre-key"));
  return record;
}

absl::StatusOr<signal::Image> LoadSignalImage(pqxx::transaction_base& tx, const Sealer& sealer,
                                              const std::string& session_id, bool with_pre_keys) {
  WAS_RETURN_IF_ERROR(CheckSessionId(session_id));
  signal::Image image;
  if (with_pre_keys) {
    for (const auto& row : tx.exec_params(
             "SELECT key_id, seal_key, record FROM signal_pre_keys WHERE session_id = $1::uuid",
             session_id)) {
      WAS_ASSIGN_OR_RETURN(image.pre_keys[row[0].as<uint32_t>()],
                           Opened(sealer, row, 1, 2, "pre-key"));
    }
  }
  for (const auto& row : tx.exec_params("SELECT key_id, seal_key, record FROM"
                                        " signal_signed_pre_keys WHERE session_id = $1::uuid",
                                        session_id)) {
    WAS_ASSIGN_OR_RETURN(image.signed_pre_keys[row[0].as<uint32_t>()],
                         Opened(sealer, row, 1, 2, "signed pre-key"));
  }
  for (const auto& row : tx.exec_params("SELECT peer, device, seal_key, record FROM"
                                        " signal_sessions WHERE session_id = $1::uuid",
                                        session_id)) {
    const auto key = std::make_pair(row[0].as<std::string>(), row[1].as<int32_t>());
    WAS_ASSIGN_OR_RETURN(image.sessions[key], Opened(sealer, row, 2, 3, "session"));
  }
  for (const auto& row : tx.exec_params("SELECT peer, device, identity FROM signal_identities"
                                        " WHERE session_id = $1::uuid",
                                        session_id)) {
    image.identities[std::make_pair(row[0].as<std::string>(), row[1].as<int32_t>())] =
        BlobOf(row[2]);
  }
  for (const auto& row :
       tx.exec_params("SELECT group_id, sender, device, seal_key, record FROM signal_sender_keys"
                      " WHERE session_id = $1::uuid",
                      session_id)) {
    const auto key =
        std::make_tuple(row[0].as<std::string>(), row[1].as<std::string>(), row[2].as<int32_t>());
    WAS_ASSIGN_OR_RETURN(image.sender_keys[key], Opened(sealer, row, 3, 4, "sender key"));
  }
  return image;
}

absl::Status WriteSignalChanges(pqxx::transaction_base& tx, const Sealer& sealer,
                                const std::string& session_id, int64_t lease_token,
                                const std::vector<Change>& changes) {
  WAS_RETURN_IF_ERROR(CheckSessionId(session_id));
  if (changes.empty()) return absl::OkStatus();
  WAS_RETURN_IF_ERROR(CheckLease(tx, session_id, lease_token));
  for (const Change& c : changes) {
    std::optional<Sealer::Sealed> sealed;
    if (c.value && c.kind != Change::Kind::kIdentity) sealed = sealer.Seal(*c.value);
    switch (c.kind) {
      case Change::Kind::kPreKey:
      case Change::Kind::kSignedPreKey: {
        const char* table =
            c.kind == Change::Kind::kPreKey ? "signal_pre_keys" : "signal_signed_pre_keys";
        if (!sealed) {
          tx.exec_params(
              absl::StrCat("DELETE FROM ", table, " WHERE session_id = $1::uuid AND key_id = $2"),
              session_id, static_cast<int64_t>(c.id));
        } else {
          tx.exec_params(
              absl::StrCat("INSERT INTO ", table,
                           " (session_id, key_id, seal_key, record) VALUES ($1::uuid, $2, $3,"
                           " decode($4, 'hex')) ON CONFLICT (session_id, key_id) DO UPDATE SET"
                           " seal_key = EXCLUDED.seal_key, record = EXCLUDED.record"),
              session_id, static_cast<int64_t>(c.id), sealed->key_id, HexEncode(sealed->blob));
        }
        break;
      }
      case Change::Kind::kSession:
        if (!sealed) {
          tx.exec_params(
              "DELETE FROM signal_sessions WHERE session_id = $1::uuid AND peer = $2"
              " AND device = $3",
              session_id, c.address.name, c.address.device);
        } else {
          tx.exec_params(
              "INSERT INTO signal_sessions (session_id, peer, device, seal_key, record) VALUES"
              " ($1::uuid, $2, $3, $4, decode($5, 'hex')) ON CONFLICT (session_id, peer, device)"
              " DO UPDATE SET seal_key = EXCLUDED.seal_key, record = EXCLUDED.record",
              session_id, c.address.name, c.address.device, sealed->key_id,
              HexEncode(sealed->blob));
        }
        break;
      case Change::Kind::kIdentity:
        if (!c.value) {
          tx.exec_params(
              "DELETE FROM signal_identities WHERE session_id = $1::uuid AND peer = $2"
              " AND device = $3",
              session_id, c.address.name, c.address.device);
          break;
        }
        tx.exec_params(
            "INSERT INTO signal_identities (session_id, peer, device, identity) VALUES"
            " ($1::uuid, $2, $3, decode($4, 'hex')) ON CONFLICT (session_id, peer, device)"
            " DO UPDATE SET identity = EXCLUDED.identity",
            session_id, c.address.name, c.address.device, HexEncode(*c.value));
        break;
      case Change::Kind::kSenderKey:
        if (!sealed) {
          tx.exec_params(
              "DELETE FROM signal_sender_keys WHERE session_id = $1::uuid AND"
              " group_id = $2 AND sender = $3 AND device = $4",
              session_id, c.group, c.address.name, c.address.device);
          break;
        }
        tx.exec_params(
            "INSERT INTO signal_sender_keys (session_id, group_id, sender, device, seal_key,"
            " record) VALUES ($1::uuid, $2, $3, $4, $5, decode($6, 'hex')) ON CONFLICT"
            " (session_id, group_id, sender, device) DO UPDATE SET seal_key ="
            " EXCLUDED.seal_key, record = EXCLUDED.record",
            session_id, c.group, c.address.name, c.address.device, sealed->key_id,
            HexEncode(sealed->blob));
        break;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<uint32_t> TakePreKeyIds(pqxx::transaction_base& tx, const std::string& session_id,
                                       int64_t lease_token, uint32_t count) {
  WAS_RETURN_IF_ERROR(CheckSessionId(session_id));
  if (count == 0 || count > 1000) return absl::InvalidArgumentError("1..1000 pre-key ids at once");
  WAS_RETURN_IF_ERROR(CheckLease(tx, session_id, lease_token));
  // next_id runs over 1..0xFFFFFE (libsignal keeps a pre-key with id 0xFFFFFF after use: its
  // last-resort key); the row keeps the one after the last handed out.
  auto r = tx.exec_params(
      "INSERT INTO signal_pre_key_ids (session_id, next_id) VALUES ($1::uuid, 1 + $2)"
      " ON CONFLICT (session_id) DO UPDATE SET next_id ="
      " (signal_pre_key_ids.next_id - 1 + $2) % 16777214 + 1"
      " RETURNING (next_id - 1 - $2 + 16777214) % 16777214 + 1",
      session_id, static_cast<int64_t>(count));
  return r[0][0].as<uint32_t>();
}

}  // namespace wasentinel::session
