// wactl: the operator's command line of session-service's gRPC API.
//
//   wactl [flags] sessions list [--tenant=T] [--state=CONNECTED,...] [--page_size=N]
//   wactl [flags] sessions get|connect|disconnect|reconnect|logout|delete|probe ID
//   wactl [flags] sessions create --tenant=T [--creds=creds.json|FOLDER] [--name=primary]
//                                 [--account=NAME] [--email=E] [--auto_connect=false]
//   wactl [flags] pair --tenant=T [--name=primary] | pair --session=ID   [--png=qr.png]
//                      [--phone=+NUMBER: a pairing code to type on that phone instead of QR]
//   wactl [flags] watch [--after=SEQ] [--session=ID] [--tenant=T]
//   wactl [flags] health [--deep]
//   wactl [flags] send --session=ID --to=NUMBER --text=TEXT [--client_id=X]
//   wactl [flags] messages watch [--after=SEQ] [--session=ID] [--tenant=T]
//   wactl [flags] messages list --session=ID --chat=NUMBER|JID [--page_size=N]
//   wactl [flags] messages read --session=ID --chat=NUMBER|JID MESSAGE_ID...
// (`wactl list`, `wactl get ID`, ... work too.) Human tables by default; --json prints the
// responses as protobuf JSON (watch and pair: one JSON object per line).
//
// Exit codes: 0 OK; 1 the call failed (its gRPC status is printed) or pairing failed;
// 2 bad usage; 3 a probe that reached the session but got no answer.
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>
#include <grpcpp/grpcpp.h>
#include <png.h>
#include <qrencode.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <memory>
#include <optional>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "wasentinel/common/config.h"
#include "wasentinel/session/v1/session.grpc.pb.h"

ABSL_FLAG(std::string, addr, "127.0.0.1:7001", "session-service address [WAS_ADDR]");
ABSL_FLAG(std::string, api_key, "", "API key sent as x-api-key [WAS_API_KEY]");
ABSL_FLAG(std::string, tls_ca, "", "PEM CA to verify a TLS server; empty: plaintext [WAS_TLS_CA]");
ABSL_FLAG(bool, json, false, "print protobuf JSON instead of tables");
ABSL_FLAG(std::string, tenant, "", "tenant id (create, list, pair, watch)");
ABSL_FLAG(std::string, state, "", "comma-separated states to list, e.g. CONNECTED,DISCONNECTED");
ABSL_FLAG(int, page_size, 0, "list page size (server default 100)");
ABSL_FLAG(std::string, page_token, "", "list page token");
ABSL_FLAG(std::string, creds, "",
          "create: a Baileys creds.json, or the folder useMultiFileAuthState keeps (creds.json and "
          "the pre-key-<id>.json files beside it); none: pair it later");
ABSL_FLAG(std::string, name, "primary", "create, pair: session name");
ABSL_FLAG(std::string, account, "", "create, pair: account name");
ABSL_FLAG(std::string, email, "", "create, pair: owner e-mail");
ABSL_FLAG(bool, auto_connect, true, "create: connect now and on every start");
ABSL_FLAG(int64_t, after, -1, "watch: replay events after this sequence (-1: only new ones)");
ABSL_FLAG(std::string, session, "", "watch, pair: only / this session");
ABSL_FLAG(std::string, png, "", "pair: also write each QR code to this PNG file");
ABSL_FLAG(std::string, phone, "",
          "pair: the account's phone number; pair by a code typed on that phone, not a QR code");
ABSL_FLAG(bool, deep, false, "health: deep health (database latency, every session)");
ABSL_FLAG(std::string, to, "", "send: the recipient's number (\"+1 555 123 4567\") or JID");
ABSL_FLAG(std::string, text, "", "send: the text");
ABSL_FLAG(std::string, client_id, "", "send: a client message id (a retried send sends once)");
ABSL_FLAG(std::string, chat, "", "messages list|read: the chat (a number or a JID)");
ABSL_FLAG(int, timeout_seconds, 30, "deadline of unary calls");

namespace v1 = wasentinel::session::v1;
using google::protobuf::util::TimeUtil;

namespace {

std::string CodeName(const grpc::Status& status) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code()));
}

int Fail(const grpc::Status& status) {
  std::cerr << "wactl: " << CodeName(status) << ": " << status.error_message() << "\n";
  return 1;
}

std::string Json(const google::protobuf::Message& m, bool pretty) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = pretty;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(m, &json, options);
  if (!pretty) json += "\n";
  return json;
}

std::string State(int s) {
  std::string n = v1::SessionState_Name(static_cast<v1::SessionState>(s));
  return n.substr(std::string("SESSION_STATE_").size());
}
std::string Reason(int r) {
  std::string n = v1::StateReason_Name(static_cast<v1::StateReason>(r));
  return n.substr(std::string("STATE_REASON_").size());
}
std::string MessageStatus(int m) {
  std::string n = v1::MessageStatus_Name(static_cast<v1::MessageStatus>(m));
  return n.substr(std::string("MESSAGE_STATUS_").size());
}
std::string When(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0 && t.nanos() == 0) return "-";
  return absl::FormatTime("%Y-%m-%d %H:%M:%S", absl::FromUnixSeconds(t.seconds()),
                          absl::LocalTimeZone());
}
std::string Dur(const google::protobuf::Duration& d) {
  return absl::FormatDuration(absl::Microseconds(TimeUtil::DurationToMicroseconds(d)));
}

void Table(const std::vector<v1::Session>& sessions) {
  std::printf("%-36s  %-16s  %-10s  %-14s  %-13s  %-19s  %s\n", "ID", "TENANT", "NAME", "PHONE",
              "STATE", "REASON", "LAST CONNECTED");
  for (const auto& s : sessions) {
    std::printf("%-36s  %-16s  %-10s  %-14s  %-13s  %-19s  %s\n", s.id().c_str(),
                s.tenant_id().c_str(), s.session_name().c_str(),
                s.phone_number().empty() ? "-" : s.phone_number().c_str(), State(s.state()).c_str(),
                Reason(s.reason()).c_str(), When(s.last_connected_at()).c_str());
  }
}

void Detail(const v1::Session& s) {
  auto row = [](const char* k, const std::string& v) { std::printf("%-22s %s\n", k, v.c_str()); };
  row("id", s.id());
  row("tenant", s.tenant_id());
  row("session name", s.session_name());
  row("account name", s.account_name());
  row("owner e-mail", s.owner_email());
  row("phone number", s.phone_number());
  row("device", s.device_jid());
  row("state", State(s.state()) + " (" + Reason(s.reason()) + ")");
  if (!s.last_error().empty()) row("last error", s.last_error());
  if (s.failure_code() != 0) row("WhatsApp's code", absl::StrCat(s.failure_code()));
  if (s.state() == v1::SESSION_STATE_BANNED) {
    row("temporary ban", absl::StrCat("code ", s.ban_code(), ", until ",
                                      s.has_ban_expires_at() ? When(s.ban_expires_at())
                                                             : std::string("(not given)")));
  }
  row("credentials", s.has_credentials() ? "yes" : "no");
  row("active / auto-connect",
      absl::StrCat(s.is_active() ? "yes" : "no", " / ", s.auto_connect() ? "yes" : "no"));
  row("socket alive", s.socket_alive() ? "yes" : "no");
  row("last connected", When(s.last_connected_at()));
  row("last disconnected", When(s.last_disconnected_at()));
  row("last pong", When(s.last_pong_at()));
  if (s.has_keepalive_rtt()) row("keepalive round trip", Dur(s.keepalive_rtt()));
  row("reconnects / errors", absl::StrCat(s.reconnect_count(), " / ", s.error_count()));
  row("inbound messages", absl::StrCat(s.inbound_messages()));
}

using QrCode = std::unique_ptr<QRcode, decltype(&QRcode_free)>;

// The QR symbol of `text` (8-bit mode, level L, the smallest version that fits), or null.
QrCode EncodeQr(const std::string& text) {
  return QrCode(QRcode_encodeString(text.c_str(), 0, QR_ECLEVEL_L, QR_MODE_8, 1), QRcode_free);
}

// Prints the QR code with half-block characters (two modules per character cell).
void DrawQr(const std::string& text) {
  QrCode qr = EncodeQr(text);
  if (!qr) {
    std::cerr << "wactl: cannot encode the QR code\n";
    return;
  }
  const int w = qr->width, margin = 2, size = w + 2 * margin;
  auto dark = [&](int x, int y) {
    x -= margin;
    y -= margin;
    return x >= 0 && y >= 0 && x < w && y < w && (qr->data[y * w + x] & 1);
  };
  for (int y = 0; y < size; y += 2) {
    std::string line;
    for (int x = 0; x < size; ++x) {
      const bool top = dark(x, y), bottom = y + 1 < size && dark(x, y + 1);
      // Light modules are drawn (the terminal background is assumed dark).
      line += !top && !bottom ? "█" : !top ? "▀" : !bottom ? "▄" : " ";
    }
    std::cout << line << "\n";
  }
  std::cout.flush();
}

bool WritePng(const std::string& text, const std::string& path) {
  QrCode qr = EncodeQr(text);
  if (!qr) return false;
  constexpr int kScale = 8, kMargin = 4;
  const int w = qr->width, size = (w + 2 * kMargin) * kScale;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return false;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    std::fclose(f);
    return false;
  }
  png_init_io(png, f);
  png_set_IHDR(png, info, size, size, 8, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  std::vector<png_byte> row(size);
  for (int y = 0; y < size; ++y) {
    const int qy = y / kScale - kMargin;
    for (int x = 0; x < size; ++x) {
      const int qx = x / kScale - kMargin;
      const bool dark = qx >= 0 && qy >= 0 && qx < w && qy < w && (qr->data[qy * w + qx] & 1);
      row[x] = dark ? 0 : 255;
    }
    png_write_row(png, row.data());
  }
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return std::fclose(f) == 0;
}

int Usage() {
  std::cerr
      << "usage: wactl [--addr=HOST:PORT] [--json] sessions list|get|create|connect|"
         "disconnect|reconnect|logout|delete|probe [ID] | pair | watch | health [--deep] | send | "
         "messages watch|list|read"
         "  (--help for flags)\n";
  return 2;
}

class Cli {
 public:
  explicit Cli(std::shared_ptr<grpc::Channel> channel)
      : stub_(v1::SessionService::NewStub(std::move(channel))), json_(absl::GetFlag(FLAGS_json)) {}

  std::unique_ptr<grpc::ClientContext> Context(bool deadline = true) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    if (const std::string key = absl::GetFlag(FLAGS_api_key); !key.empty()) {
      ctx->AddMetadata("x-api-key", key);
    }
    if (deadline) {
      ctx->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::seconds(absl::GetFlag(FLAGS_timeout_seconds)));
    }
    return ctx;
  }

  // A unary call answering a Session: the table form or JSON.
  template <class Req, class Resp, class Method>
  int SessionCall(Method method, const Req& req) {
    Resp resp;
    auto ctx = Context();
    grpc::Status st = (stub_.get()->*method)(ctx.get(), req, &resp);
    if (!st.ok()) return Fail(st);
    if (json_) {
      std::cout << Json(resp, true);
    } else {
      Detail(resp.session());
    }
    return 0;
  }

  // A session call whose request is just the id.
  template <class Req, class Resp, class Method>
  int ById(Method method, const std::string& id) {
    Req req;
    req.set_id(id);
    return SessionCall<Req, Resp>(method, req);
  }

  int Sessions(const std::string& verb, const std::string& id) {
    if (verb == "list") return List();
    if (verb == "create") return Create();
    if (id.empty()) return Usage();
    using Stub = v1::SessionService::Stub;
    if (verb == "get")
      return ById<v1::GetSessionRequest, v1::GetSessionResponse>(&Stub::GetSession, id);
    if (verb == "connect") return ById<v1::ConnectRequest, v1::ConnectResponse>(&Stub::Connect, id);
    if (verb == "disconnect") {
      return ById<v1::DisconnectRequest, v1::DisconnectResponse>(&Stub::Disconnect, id);
    }
    if (verb == "reconnect") {
      return ById<v1::ReconnectRequest, v1::ReconnectResponse>(&Stub::Reconnect, id);
    }
    if (verb == "logout") return ById<v1::LogoutRequest, v1::LogoutResponse>(&Stub::Logout, id);
    if (verb == "delete") {
      v1::DeleteSessionRequest r;
      r.set_id(id);
      v1::DeleteSessionResponse resp;
      auto ctx = Context();
      grpc::Status st = stub_->DeleteSession(ctx.get(), r, &resp);
      if (!st.ok()) return Fail(st);
      std::cout << (json_ ? "{}\n" : "deleted " + id + "\n");
      return 0;
    }
    if (verb == "probe") {
      v1::ProbeSessionRequest r;
      r.set_id(id);
      v1::ProbeSessionResponse resp;
      auto ctx = Context();
      grpc::Status st = stub_->ProbeSession(ctx.get(), r, &resp);
      if (!st.ok()) return Fail(st);
      if (json_) {
        std::cout << Json(resp, true);
      } else if (resp.ok()) {
        std::cout << "answered in " << Dur(resp.round_trip()) << "\n";
      } else {
        std::cout << "no answer: " << resp.error() << "\n";
      }
      return resp.ok() ? 0 : 3;
    }
    return Usage();
  }

  int List() {
    v1::ListSessionsRequest req;
    req.set_tenant_id(absl::GetFlag(FLAGS_tenant));
    req.set_page_size(absl::GetFlag(FLAGS_page_size));
    req.set_page_token(absl::GetFlag(FLAGS_page_token));
    for (absl::string_view s : absl::StrSplit(absl::GetFlag(FLAGS_state), ',', absl::SkipEmpty())) {
      v1::SessionState state;
      if (!v1::SessionState_Parse("SESSION_STATE_" + std::string(s), &state)) {
        std::cerr << "wactl: unknown state " << s << "\n";
        return 2;
      }
      req.add_states(state);
    }
    v1::ListSessionsResponse resp;
    auto ctx = Context();
    grpc::Status st = stub_->ListSessions(ctx.get(), req, &resp);
    if (!st.ok()) return Fail(st);
    if (json_) {
      std::cout << Json(resp, true);
      return 0;
    }
    Table({resp.sessions().begin(), resp.sessions().end()});
    if (!resp.next_page_token().empty()) {
      std::cout << "more: --page_token=" << resp.next_page_token() << "\n";
    }
    return 0;
  }

  // The contents of `path`, or nullopt (said on stderr).
  static std::optional<std::string> ReadFile(const std::filesystem::path& path) {
    std::ifstream f(path);
    if (!f) {
      std::cerr << "wactl: cannot read " << path.string() << "\n";
      return std::nullopt;
    }
    return std::string(std::istreambuf_iterator<char>(f), {});
  }

  int Create() {
    v1::CreateSessionRequest req;
    if (const std::string path = absl::GetFlag(FLAGS_creds); !path.empty()) {
      std::error_code ec;
      if (std::filesystem::is_directory(path, ec)) {
        // Baileys' useMultiFileAuthState folder: creds.json and the one-time pre-keys the device
        // uploaded (pre-key-<id>.json), which an imported session must keep.
        auto creds = ReadFile(std::filesystem::path(path) / "creds.json");
        if (!creds) return 2;
        req.set_creds_json(*std::move(creds));
        for (const auto& entry : std::filesystem::directory_iterator(path, ec)) {
          const std::string name = entry.path().filename().string();
          if (!name.starts_with("pre-key-") || !name.ends_with(".json")) continue;
          auto contents = ReadFile(entry.path());
          if (!contents) return 2;
          (*req.mutable_pre_key_files())[name] = *std::move(contents);
        }
        if (ec) {
          std::cerr << "wactl: cannot list " << path << ": " << ec.message() << "\n";
          return 2;
        }
      } else {
        auto creds = ReadFile(path);
        if (!creds) return 2;
        req.set_creds_json(*std::move(creds));
      }
    }
    req.set_tenant_id(absl::GetFlag(FLAGS_tenant));
    req.set_session_name(absl::GetFlag(FLAGS_name));
    req.set_account_name(absl::GetFlag(FLAGS_account));
    req.set_owner_email(absl::GetFlag(FLAGS_email));
    req.set_auto_connect(absl::GetFlag(FLAGS_auto_connect));
    return SessionCall<v1::CreateSessionRequest, v1::CreateSessionResponse>(
        &v1::SessionService::Stub::CreateSession, req);
  }

  int Pair() {
    v1::StartPairingRequest req;
    req.set_session_id(absl::GetFlag(FLAGS_session));
    req.set_tenant_id(absl::GetFlag(FLAGS_tenant));
    req.set_session_name(absl::GetFlag(FLAGS_name));
    req.set_account_name(absl::GetFlag(FLAGS_account));
    req.set_owner_email(absl::GetFlag(FLAGS_email));
    req.set_phone_number(absl::GetFlag(FLAGS_phone));
    if (req.session_id().empty() && req.tenant_id().empty()) {
      std::cerr << "wactl: pair needs --tenant (a new or unpaired session) or --session=ID\n";
      return 2;
    }
    auto ctx = Context(/*deadline=*/false);
    auto reader = stub_->StartPairing(ctx.get(), req);
    v1::PairingUpdate u;
    int rc = 1;
    const std::string png = absl::GetFlag(FLAGS_png);
    while (reader->Read(&u)) {
      if (json_) std::cout << Json(u, false) << std::flush;
      switch (u.update_case()) {
        case v1::PairingUpdate::kSession:
          if (!json_) std::cout << "pairing session " << u.session().id() << "\n";
          break;
        case v1::PairingUpdate::kQr:
          if (!png.empty() && !WritePng(u.qr().code(), png)) {
            std::cerr << "wactl: cannot write " << png << "\n";
          }
          if (!json_) {
            std::cout << "\nScan with WhatsApp → Linked devices (code " << u.qr().index() << " of "
                      << u.qr().total() << ", valid until " << When(u.qr().expires_at()) << "):\n";
            DrawQr(u.qr().code());
          }
          break;
        case v1::PairingUpdate::kPairingCode:
          if (!json_) {
            std::cout << "\nOn the phone: WhatsApp → Linked devices → Link a device → Link with "
                         "phone number instead, and type\n\n    "
                      << u.pairing_code().code() << "\n\n(valid until "
                      << When(u.pairing_code().expires_at()) << ")\n"
                      << std::flush;
          }
          break;
        case v1::PairingUpdate::kSuccess:
          if (!json_) {
            std::cout << "paired: " << u.success().device_jid() << " (" << u.success().platform()
                      << "); session " << State(u.success().session().state()) << "\n";
          }
          rc = 0;
          break;
        case v1::PairingUpdate::kFailure:
          std::cerr << "wactl: pairing failed: "
                    << v1::PairingUpdate::Failure::Reason_Name(u.failure().reason()) << ": "
                    << u.failure().message() << "\n";
          rc = 1;
          break;
        default:
          break;
      }
    }
    grpc::Status st = reader->Finish();
    if (!st.ok()) return Fail(st);
    return rc;
  }

  // A watch request of the flags --after, --session and --tenant.
  template <class Request>
  Request WatchRequest() const {
    Request req;
    if (absl::GetFlag(FLAGS_after) >= 0) req.set_after_sequence(absl::GetFlag(FLAGS_after));
    req.set_session_id(absl::GetFlag(FLAGS_session));
    req.set_tenant_id(absl::GetFlag(FLAGS_tenant));
    return req;
  }

  // Follows a watch stream until it ends: each item a JSON line (--json) or `line`.
  template <class Request, class Item>
  int Follow(std::unique_ptr<grpc::ClientReader<Item>> (v1::SessionService::Stub::*watch)(
                 grpc::ClientContext*, const Request&),
             const std::function<void(const Item&)>& line) {
    auto ctx = Context(/*deadline=*/false);
    auto reader = ((*stub_).*watch)(ctx.get(), WatchRequest<Request>());
    Item item;
    while (reader->Read(&item)) {
      if (json_) {
        std::cout << Json(item, false) << std::flush;
      } else {
        line(item);
      }
    }
    grpc::Status st = reader->Finish();
    return st.ok() ? 0 : Fail(st);
  }

  int Watch() {
    return Follow<v1::WatchSessionEventsRequest, v1::SessionEvent>(
        &v1::SessionService::Stub::WatchSessionEvents, [this](const v1::SessionEvent& e) {
          std::cout << absl::StrFormat("%8d  %s  %s  %s → %s (%s)%s\n", e.sequence(), When(e.at()),
                                       e.session_id(), State(e.from_state()), State(e.to_state()),
                                       Reason(e.reason()),
                                       e.error().empty() ? "" : ": " + e.error())
                    << std::flush;
        });
  }

  // One message as a line: sequence, time, status, direction, chat, id, text.
  void MessageLine(const v1::Message& m) {
    std::cout << absl::StrFormat("%8d  %s  %-10s %s %s  %s  %s%s\n", m.sequence(),
                                 When(m.sent_at()), MessageStatus(m.status()),
                                 m.from_me() ? "→" : "←", m.chat(), m.message_id(),
                                 m.text().empty() ? "[" + m.kind() + "]" : m.text(),
                                 m.failure().empty() ? "" : "  (" + m.failure() + ")")
              << std::flush;
  }

  int Send() {
    v1::SendMessageRequest req;
    req.set_session_id(absl::GetFlag(FLAGS_session));
    req.set_to(absl::GetFlag(FLAGS_to));
    req.set_text(absl::GetFlag(FLAGS_text));
    req.set_client_message_id(absl::GetFlag(FLAGS_client_id));
    if (req.session_id().empty() || req.to().empty() || req.text().empty()) return Usage();
    v1::SendMessageResponse resp;
    auto ctx = Context();
    grpc::Status st = stub_->SendMessage(ctx.get(), req, &resp);
    if (!st.ok()) return Fail(st);
    if (json_) {
      std::cout << Json(resp, true);
    } else {
      MessageLine(resp.message());
    }
    return 0;
  }

  int Messages(const std::string& verb, const std::vector<std::string>& ids) {
    if (verb == "watch") {
      return Follow<v1::WatchMessagesRequest, v1::Message>(
          &v1::SessionService::Stub::WatchMessages,
          [this](const v1::Message& m) { MessageLine(m); });
    }
    if (verb == "list") {
      v1::ListMessagesRequest req;
      req.set_session_id(absl::GetFlag(FLAGS_session));
      req.set_chat(absl::GetFlag(FLAGS_chat));
      req.set_page_size(absl::GetFlag(FLAGS_page_size));
      req.set_page_token(absl::GetFlag(FLAGS_page_token));
      v1::ListMessagesResponse resp;
      auto ctx = Context();
      grpc::Status st = stub_->ListMessages(ctx.get(), req, &resp);
      if (!st.ok()) return Fail(st);
      if (json_) {
        std::cout << Json(resp, true);
        return 0;
      }
      for (const auto& m : resp.messages()) MessageLine(m);
      if (!resp.next_page_token().empty()) {
        std::cout << "next page: --page_token=" << resp.next_page_token() << "\n";
      }
      return 0;
    }
    if (verb == "read") {
      v1::MarkReadRequest req;
      req.set_session_id(absl::GetFlag(FLAGS_session));
      req.set_chat(absl::GetFlag(FLAGS_chat));
      for (const auto& id : ids) req.add_message_ids(id);
      v1::MarkReadResponse resp;
      auto ctx = Context();
      grpc::Status st = stub_->MarkRead(ctx.get(), req, &resp);
      if (!st.ok()) return Fail(st);
      if (json_) {
        std::cout << Json(resp, true);
      } else {
        std::cout << "marked read: " << resp.marked_size()
                  << "  not found: " << absl::StrJoin(resp.not_found(), " ") << "\n";
      }
      return 0;
    }
    return Usage();
  }

  int Health() {
    auto ctx = Context();
    if (!absl::GetFlag(FLAGS_deep)) {
      v1::GetHealthResponse resp;
      grpc::Status st = stub_->GetHealth(ctx.get(), {}, &resp);
      if (!st.ok()) return Fail(st);
      if (json_) {
        std::cout << Json(resp, true);
        return 0;
      }
      std::cout << v1::OverallStatus_Name(resp.status()) << "  sessions " << resp.total_sessions()
                << "  database " << (resp.database_reachable() ? "reachable" : "UNREACHABLE")
                << "  up " << Dur(resp.uptime()) << "\n";
      for (const auto& c : resp.counts())
        std::cout << "  " << State(c.state()) << " " << c.count() << "\n";
      return 0;
    }
    v1::GetDeepHealthResponse resp;
    grpc::Status st = stub_->GetDeepHealth(ctx.get(), {}, &resp);
    if (!st.ok()) return Fail(st);
    if (json_) {
      std::cout << Json(resp, true);
      return 0;
    }
    std::cout << v1::OverallStatus_Name(resp.status()) << "  replica " << resp.replica()
              << "  database "
              << (resp.database_reachable() ? "reachable in " + Dur(resp.database_latency())
                                            : "UNREACHABLE: " + resp.database_error())
              << "\n";
    std::printf("%-36s  %-13s  %-6s  %-12s  %-19s  %-19s  %s\n", "SESSION", "STATE", "SOCKET",
                "KEEPALIVE", "LAST PONG", "LAST INBOUND", "RECONNECTS/ERRORS");
    for (const auto& h : resp.sessions()) {
      std::printf("%-36s  %-13s  %-6s  %-12s  %-19s  %-19s  %lld/%lld\n", h.id().c_str(),
                  State(h.state()).c_str(), h.socket_alive() ? "alive" : "-",
                  h.has_keepalive_rtt() ? Dur(h.keepalive_rtt()).c_str() : "-",
                  When(h.last_pong_at()).c_str(), When(h.last_inbound_message_at()).c_str(),
                  static_cast<long long>(h.reconnect_count()),
                  static_cast<long long>(h.error_count()));
    }
    return 0;
  }

 private:
  std::unique_ptr<v1::SessionService::Stub> stub_;
  const bool json_;
};

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> args = wasentinel::config::ParseFlags(
      argc, argv, "wactl: command line of WA Sentinel's session-service");
  if (args.size() < 2) return Usage();
  std::vector<std::string> words(args.begin() + 1, args.end());
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (const std::string ca = absl::GetFlag(FLAGS_tls_ca); !ca.empty()) {
    std::ifstream f(ca);
    if (!f) {
      std::cerr << "wactl: cannot read " << ca << "\n";
      return 2;
    }
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = std::string(std::istreambuf_iterator<char>(f), {});
    creds = grpc::SslCredentials(ssl);
  }
  Cli cli(grpc::CreateChannel(absl::GetFlag(FLAGS_addr), creds));
  const std::string& cmd = words[0];
  if (cmd == "sessions") {
    if (words.size() < 2) return Usage();
    return cli.Sessions(words[1], words.size() > 2 ? words[2] : "");
  }
  if (cmd == "pair") return cli.Pair();
  if (cmd == "watch") return cli.Watch();
  if (cmd == "health") return cli.Health();
  if (cmd == "send") return cli.Send();
  if (cmd == "messages") {
    if (words.size() < 2) return Usage();
    return cli.Messages(words[1], std::vector<std::string>(words.begin() + 2, words.end()));
  }
  return cli.Sessions(cmd, words.size() > 1 ? words[1] : "");  // `wactl list`, `wactl get ID`
}
