// wa-sim's control API (HTTP/JSON), which tests drive the simulator with: the WhatsApp Web
// page and the version policy, stats, outages, the device registry, pairing as the phone, and
// faults on live connections (drops, blackholes, stream errors, stanzas).
#include <algorithm>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "credentials.h"
#include "pairing.h"
#include "sim_internal.h"
#include "wasentinel/common/logging.h"

namespace wasentinel::sim {
namespace {

using namespace sim_internal;  // the aliases and types the parts of wa-sim share

// "15551234567:12@s.whatsapp.net" or "15551234567:12" → "15551234567:12".
std::string DeviceKey(std::string_view jid) {
  std::string key(jid.substr(0, jid.find('@')));
  if (key.find(':') == std::string::npos) key += ":0";
  return key;
}

// The stanza classes the control API sends (POST …/stanza {"tag"}), and who sends them.
constexpr char kStanzaTags[] = "\"tag\" is message, receipt, notification, status, appdata or call";
constexpr char kSomeone[] = "15550009999@s.whatsapp.net";
bool StanzaTagOk(const json& body) {
  if (body.contains("tag") && !body["tag"].is_string()) return false;
  const std::string tag = body.value("tag", std::string("message"));
  return tag == "message" || tag == "receipt" || tag == "notification" || tag == "status" ||
         tag == "appdata" || tag == "call";
}

http::response<http::string_body> JsonResponse(http::status status, const json& body,
                                               unsigned version, bool keep_alive) {
  http::response<http::string_body> res{status, version};
  res.set(http::field::content_type, "application/json");
  res.keep_alive(keep_alive);
  res.body() = body.dump();
  res.prepare_payload();
  return res;
}

}  // namespace

awaitable<void> SimServer::State::ServeControl(std::shared_ptr<State> self, tcp::socket socket) {
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  try {
    for (;;) {
      http::request<http::string_body> req;
      stream.expires_after(std::chrono::seconds(30));
      co_await http::async_read(stream, buffer, req, use_awaitable);
      http::response<http::string_body> res;
      try {
        if (req.method() == http::verb::post &&
            (req.target() == "/pair" || req.target() == "/pair-code")) {
          res = co_await Pair(self, req);
        } else {
          res = self->Route(req);
        }
      } catch (const std::exception& e) {  // a JSON member of the wrong type, for one
        res = JsonResponse(http::status::bad_request, {{"error", e.what()}}, req.version(),
                           req.keep_alive());
      }
      co_await http::async_write(stream, res, use_awaitable);
      if (!req.keep_alive()) break;
    }
  } catch (const std::exception&) {
  }
  beast::error_code ec;
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
}

awaitable<http::response<http::string_body>> SimServer::State::Pair(
    std::shared_ptr<State> self, const http::request<http::string_body>& req) {
  auto reply = [&](http::status st, const json& body) {
    return JsonResponse(st, body, req.version(), req.keep_alive());
  };
  const bool by_code = req.target() == "/pair-code";
  const char* what = by_code ? "code" : "qr";
  json body = json::parse(req.body(), nullptr, false);
  if (body.is_discarded() || !body.is_object() || !body.contains(what) || !body[what].is_string() ||
      !body.contains("phone") || !body["phone"].is_string()) {
    co_return reply(
        http::status::bad_request,
        {{"error", by_code ? "give \"code\" (as shown) and \"phone\" (E.164 digits)"
                           : "give \"qr\" (the text shown) and \"phone\" (E.164 digits)"}});
  }
  const std::string phone = body["phone"];
  if (phone.empty() || phone.size() > 15 ||
      phone.find_first_not_of("0123456789") != std::string::npos || phone[0] == '0') {
    co_return reply(http::status::bad_request, {{"error", "phone must be E.164 digits"}});
  }
  struct Wait {
    explicit Wait(asio::any_io_executor ex) : timer(ex) {}
    asio::steady_timer timer;
    std::optional<SimConn::PairOutcome> outcome;
  };
  auto wait = std::make_shared<Wait>(self->io_.get_executor());
  wait->timer.expires_after(std::chrono::seconds(body.value("timeout_seconds", 10)));
  SimConn::PairDone done = [wait](SimConn::PairOutcome o) {
    wait->outcome = std::move(o);
    wait->timer.cancel();
  };
  std::shared_ptr<SimConn> conn;
  if (by_code) {
    // The person types the code on the phone: case and the dash do not matter.
    std::string code;
    for (char c : body["code"].get<std::string>()) {
      if (c != '-' && c != ' ') code += absl::ascii_toupper(static_cast<unsigned char>(c));
    }
    for (auto& [id, c] : self->conns) {
      if (c->AwaitsCode(phone)) conn = c;
    }
    if (!conn) {
      co_return reply(http::status::not_found,
                      {{"error", "no connection waits for a pairing code for that phone"}});
    }
    if (auto st = conn->EnterCode(code, phone, body, std::move(done)); !st.ok()) {
      co_return reply(http::status::bad_request, {{"error", std::string(st.message())}});
    }
  } else {
    auto qr = wa::ParseQrCode(body["qr"].get<std::string>());
    if (!qr.ok()) {
      co_return reply(http::status::bad_request, {{"error", std::string(qr.status().message())}});
    }
    for (auto& [id, c] : self->conns) {
      if (c->Shows(*qr)) conn = c;
    }
    if (!conn) {
      co_return reply(
          http::status::not_found,
          {{"error", "no connection is showing that QR code (expired, or never issued)"}});
    }
    conn->SendPairSuccess(*qr, phone, body, std::move(done));
  }
  beast::error_code ec;
  co_await wait->timer.async_wait(asio::redirect_error(use_awaitable, ec));
  if (!wait->outcome) {
    co_return reply(http::status::gateway_timeout,
                    {{"error", "the companion did not finish pairing in time"}});
  }
  co_return reply(static_cast<http::status>(wait->outcome->http_status), wait->outcome->body);
}

http::response<http::string_body> SimServer::State::Route(
    const http::request<http::string_body>& req) {
  const unsigned v = req.version();
  const bool ka = req.keep_alive();
  auto reply = [&](http::status s, const json& body) { return JsonResponse(s, body, v, ka); };
  auto error = [&](http::status s, std::string msg) { return reply(s, {{"error", msg}}); };
  std::string target(req.target());
  std::vector<std::string> parts =
      absl::StrSplit(target.substr(0, target.find('?')), '/', absl::SkipEmpty());
  json body = json::object();
  if (!req.body().empty()) {
    body = json::parse(req.body(), nullptr, false);
    if (body.is_discarded() || !body.is_object()) {
      return error(http::status::bad_request, "the body must be a JSON object");
    }
  }
  const auto method = req.method();

  if (parts.empty() && method == http::verb::get) {
    // The WhatsApp Web page, as much of it as names the version (whatsmeow update.go reads
    // "client_revision" from it).
    ++counters.version_page_reads;
    http::response<http::string_body> res{http::status::ok, v};
    res.set(http::field::content_type, "text/html; charset=utf-8");
    res.keep_alive(ka);
    res.body() = page_override ? *page_override
                               : absl::StrCat(
                                     "<!DOCTYPE html><html><head><title>WhatsApp</title></head>"
                                     "<body><script>window.__SW_DATA={\"client_revision\":",
                                     web_version, ",\"server_revision\":", web_version,
                                     "};</script></body></html>");
    res.prepare_payload();
    return res;
  }
  if (parts.size() == 1 && parts[0] == "version" && method == http::verb::post) {
    // {"min": N, "web": N, "page": "<body>" | null, "page_bytes": N}: the version policy; a
    // page of `page_bytes` bytes (no version in it) or the given body replaces the real one.
    auto number = [&](const char* k, uint32_t* out) {
      if (!body.contains(k)) return true;
      if (!body[k].is_number_unsigned() || body[k].get<uint64_t>() > UINT32_MAX) return false;
      *out = body[k].get<uint32_t>();
      return true;
    };
    uint32_t min = min_version, web = web_version, page_bytes = 0;
    if (!number("min", &min) || !number("web", &web) || !number("page_bytes", &page_bytes) ||
        (body.contains("page") && !body["page"].is_string() && !body["page"].is_null())) {
      return error(http::status::bad_request,
                   "\"min\", \"web\" and \"page_bytes\" are numbers; \"page\" a string or null");
    }
    min_version = min;
    web_version = web;
    if (body.contains("page")) {
      page_override =
          body["page"].is_string() ? std::optional(body["page"].get<std::string>()) : std::nullopt;
    }
    if (page_bytes > 0) page_override = std::string(page_bytes, 'x');
    log_->info("version policy: minimum 2.3000.{}, the page names 2.3000.{}{}", min_version,
               web_version, page_override ? " (page replaced)" : "");
    return reply(http::status::ok, {{"min", min_version}, {"web", web_version}});
  }
  if (parts.size() == 1 && parts[0] == "health") return reply(http::status::ok, {{"ok", true}});
  if (parts.size() == 1 && parts[0] == "root-key") {
    return reply(http::status::ok, {{"root_public_key", HexEncode(root_.pub)}});
  }
  if (parts.size() == 1 && parts[0] == "cert-chain") {
    return reply(http::status::ok, {{"cert_chain", HexEncode(cert_chain_)},
                                    {"server_static_key", HexEncode(static_key_.pub)}});
  }
  if (parts.size() == 1 && parts[0] == "stats") {
    int64_t live = 0;
    for (auto& [id, c] : conns) live += c->logged_in() ? 1 : 0;
    return reply(http::status::ok, {{"connections", conns.size()},
                                    {"logged_in", live},
                                    {"devices", devices.size()},
                                    {"accepted", counters.accepted},
                                    {"logins", counters.logins},
                                    {"login_failures", counters.login_failures},
                                    {"replaced", counters.replaced},
                                    {"handshake_failures", counters.handshake_failures},
                                    {"pings_answered", counters.pings_answered},
                                    {"acks_received", counters.acks_received},
                                    {"presences_available", counters.presences_available},
                                    {"messages_sent", counters.messages_sent},
                                    {"registrations", counters.registrations},
                                    {"refused", counters.refused},
                                    {"outage", outage},
                                    {"pairings", counters.pairings},
                                    {"pairings_rejected", counters.pairings_rejected},
                                    {"logouts", counters.logouts},
                                    {"outdated_refused", counters.outdated_refused},
                                    {"offline_delivered", counters.offline_delivered},
                                    {"offline_batches", counters.offline_batches},
                                    {"prekey_uploads", counters.prekey_uploads},
                                    {"bundles_served", counters.bundles_served},
                                    {"usync_queries", counters.usync_queries},
                                    {"messages_routed", counters.messages_routed},
                                    {"messages_refused", counters.messages_refused},
                                    {"deliveries", counters.deliveries},
                                    {"receipts_routed", counters.receipts_routed},
                                    {"retries_routed", counters.retries_routed},
                                    {"phone_received", counters.phone_received},
                                    {"phone_undecryptable", counters.phone_undecryptable},
                                    {"groups", groups.size()},
                                    {"version_page_reads", counters.version_page_reads},
                                    {"min_version", min_version},
                                    {"web_version", web_version}});
  }
  if (parts.size() == 1 && parts[0] == "outage" && method == http::verb::post) {
    // {"enabled": true}: resets every live connection and refuses new ones until
    // {"enabled": false}; devices, accounts and keys are kept, as across a real outage.
    outage = body.value("enabled", true);
    int64_t reset = 0;
    if (outage) {
      for (auto& [id, c] : conns) {
        c->Drop(true);
        ++reset;
      }
    }
    log_->info("outage {}: {} connections reset", outage ? "begins" : "ends", reset);
    return reply(http::status::ok, {{"outage", outage}, {"reset", reset}});
  }
  if (!parts.empty() && parts[0] == "devices") {
    if (parts.size() == 1 && method == http::verb::get) {
      json list = json::array();
      for (auto& [k, d] : devices) {
        list.push_back({{"jid", k},
                        {"logged_out", d.logged_out},
                        {"logins", d.logins},
                        {"offline_queued", d.offline.size()},
                        {"key_index", d.key_index},
                        {"held", d.held},
                        {"prekeys", d.keys ? json(d.keys->pre_keys.size()) : json(nullptr)},
                        {"registration_id", d.keys ? d.keys->registration_id : 0}});
      }
      return reply(http::status::ok, {{"devices", list}});
    }
    if (parts.size() == 1 && method == http::verb::post) {
      // {"creds": <Baileys creds.json>} or {"jid": "PHONE:DEV", "noise_public_key": "<base64>"}.
      std::string key;
      Device d;
      if (body.contains("creds")) {
        auto creds = wa::DeviceCredentials::FromBaileysJson(body["creds"].dump());
        if (!creds.ok())
          return error(http::status::bad_request, std::string(creds.status().message()));
        key = DeviceKey(creds->Jid());
        d.noise_pub = creds->noise_key.pub;
        d.lid = creds->lid;
        d.name = creds->push_name;
      } else if (body.contains("jid") && body["jid"].is_string() &&
                 body.contains("noise_public_key") && body["noise_public_key"].is_string()) {
        auto pub = Base64Decode(body["noise_public_key"].get<std::string>());
        if (!pub.ok() || pub->size() != 32) {
          return error(http::status::bad_request, "noise_public_key must be 32 bytes of base64");
        }
        key = DeviceKey(body["jid"].get<std::string>());
        std::copy(pub->begin(), pub->end(), d.noise_pub.begin());
        if (body.contains("lid") && body["lid"].is_string()) d.lid = body["lid"];
      } else {
        return error(http::status::bad_request, "give \"creds\" or \"jid\" + \"noise_public_key\"");
      }
      devices[key] = d;
      log_->info("registered device {}", key);
      return reply(http::status::created, {{"jid", key}});
    }
    if (parts.size() == 2 && method == http::verb::delete_) {
      return devices.erase(DeviceKey(parts[1])) ? reply(http::status::ok, {{"deleted", true}})
                                                : error(http::status::not_found, "no such device");
    }
    if (parts.size() == 3 && parts[2] == "stanza" && method == http::verb::post) {
      // As /connections/{jid}/stanza, for a device that is offline: it waits in the device's
      // offline queue for its next login.
      auto it = devices.find(DeviceKey(parts[1]));
      if (it == devices.end()) return error(http::status::not_found, "no such device");
      if (!StanzaTagOk(body)) return error(http::status::bad_request, kStanzaTags);
      auto stanza = SimConn::MakeStanza(body.value("tag", std::string("message")),
                                        body.value("from", std::string(kSomeone)), body);
      const std::string id = stanza.stanza.AttrOr("id");
      it->second.offline.push_back(std::move(stanza));
      return reply(http::status::ok, {{"id", id}, {"queued", it->second.offline.size()}});
    }
    if (parts.size() == 3 && method == http::verb::post &&
        (parts[2] == "hold" || parts[2] == "corrupt-next" || parts[2] == "drain-prekeys")) {
      auto it = devices.find(DeviceKey(parts[1]));
      if (it == devices.end()) return error(http::status::not_found, "no such device");
      Device& d = it->second;
      if (parts[2] == "corrupt-next") {
        // The next message routed to the device arrives with its <enc> damaged.
        d.corrupt_next = true;
        return reply(http::status::ok, {{"jid", it->first}, {"corrupt_next", true}});
      }
      if (parts[2] == "drain-prekeys") {
        // The server hands out every one-time pre-key it holds for the device and tells it.
        const size_t drained = d.keys ? d.keys->pre_keys.size() : 0;
        if (d.keys) d.keys->pre_keys.clear();
        NotifyPreKeyCount(*this, it->first, 0);
        return reply(http::status::ok, {{"jid", it->first}, {"drained", drained}});
      }
      // {"enabled": true}: what is routed to the device waits in its offline queue even while
      // it is connected; {"enabled": false} delivers it to its live connection.
      d.held = body.value("enabled", true);
      size_t released = 0;
      if (!d.held) {
        if (auto conn = FindLive(it->first)) {
          for (auto& o : std::exchange(d.offline, {})) {
            if (o.stanza.tag == "message") o.stanza.attrs.emplace_back("offline", "0");
            conn->Take(std::move(o));
            ++released;
          }
        }
      }
      return reply(http::status::ok,
                   {{"jid", it->first}, {"held", d.held}, {"released", released}});
    }
    if (parts.size() == 3 && parts[2] == "fail-login" && method == http::verb::post) {
      // {"reason": 402, "code": 101, "expire": 3600, "message": "...", "count": 1}: the next
      // `count` logins of the device end in that <failure>.
      auto it = devices.find(DeviceKey(parts[1]));
      if (it == devices.end()) return error(http::status::not_found, "no such device");
      auto int_field = [&](const char* name, int64_t fallback, int64_t lo, int64_t hi,
                           int64_t* out) {
        if (!body.contains(name)) {
          *out = fallback;
          return true;
        }
        if (!body[name].is_number_integer()) return false;
        *out = body[name].get<int64_t>();
        return *out >= lo && *out <= hi;
      };
      int64_t reason = 0, code = 0, expire = 0, count = 1;
      if (!int_field("reason", 0, 100, 999, &reason) || reason == 0 ||
          !int_field("code", 0, 0, 9999, &code) ||
          !int_field("expire", 0, 0, int64_t{10} * 365 * 86400, &expire) ||
          !int_field("count", 1, 1, 1000, &count) ||
          (body.contains("message") && !body["message"].is_string())) {
        return error(http::status::bad_request,
                     "give \"reason\" (100-999) and optionally \"code\", \"expire\" (seconds), "
                     "\"message\", \"count\" (1-1000)");
      }
      it->second.fail_login =
          LoginFailure{static_cast<int>(reason), static_cast<int>(code), expire,
                       body.value("message", std::string()), static_cast<int>(count)};
      return reply(http::status::ok, {{"jid", it->first}, {"reason", reason}, {"count", count}});
    }
  }
  if (!parts.empty() && parts[0] == "accounts" && parts.size() == 3) {
    const std::string& phone = parts[1];
    if (phone.empty() || phone.size() > 15 ||
        phone.find_first_not_of("0123456789") != std::string::npos) {
      return error(http::status::bad_request, "the account is its phone number (E.164 digits)");
    }
    // A phone that writes may be new (an account without linked devices); the rest need one.
    if (parts[2] != "send" && DevicesOf(*this, phone).empty()) {
      return error(http::status::not_found, "no such account");
    }
    if (parts[2] == "phone" && method == http::verb::get) {
      // What the simulated phone (device 0) received.
      Phone& p = PhoneOf(*this, phone);
      return reply(http::status::ok, {{"received", p.received},
                                      {"undecryptable", p.undecryptable},
                                      {"prekeys", p.keys.pre_keys.size()},
                                      {"inbox", json(p.inbox)}});
    }
    if (parts[2] == "send" && method == http::verb::post) {
      // {"to": PHONE, "text": "…"[, "count": N]}: this account's phone writes to `to` (N
      // messages "… 0", "… 1", …, for benchmarks: {"ids": [...]}).
      if (!body.contains("to") || !body["to"].is_string() || !body.contains("text") ||
          !body["text"].is_string()) {
        return error(http::status::bad_request, "give \"to\" (a phone) and \"text\"");
      }
      const json count = body.value("count", json(1));
      if (!count.is_number_integer() || count.get<int64_t>() < 1 || count.get<int64_t>() > 10000) {
        return error(http::status::bad_request, "\"count\" is 1..10000");
      }
      const int64_t n = count.get<int64_t>();
      json ids = json::array();
      absl::StatusOr<json> sent;
      for (int64_t i = 0; i < n; ++i) {
        const std::string text = body["text"].get<std::string>();
        sent = PhoneSend(*this, phone, body["to"], n == 1 ? text : absl::StrCat(text, " ", i));
        if (!sent.ok()) {
          return error(absl::IsNotFound(sent.status()) ? http::status::not_found
                                                       : http::status::internal_server_error,
                       std::string(sent.status().message()));
        }
        ids.push_back((*sent)["id"]);
      }
      if (n > 1) (*sent)["ids"] = std::move(ids);
      return reply(http::status::ok, *sent);
    }
    if (parts[2] == "reset-identity" && method == http::verb::post) {
      auto told = ResetIdentity(*this, phone);
      if (!told.ok())
        return error(http::status::internal_server_error, std::string(told.status().message()));
      return reply(http::status::ok, {{"phone", phone}, {"told", *told}});
    }
  }
  if (!parts.empty() && parts[0] == "groups") {
    if (parts.size() == 1 && method == http::verb::post) {
      // {"subject": "…", "creator": PHONE, "participants": [PHONE, …]}: a group of those
      // accounts (the creator is a member and its super-admin).
      if (!body.contains("creator") || !body["creator"].is_string() ||
          (body.contains("participants") && !body["participants"].is_array())) {
        return error(http::status::bad_request,
                     "give \"creator\" (a phone) and \"participants\" (phones)");
      }
      Group g;
      g.creator = body["creator"];
      g.subject = body.value("subject", std::string("Group"));
      g.creation = absl::ToUnixSeconds(absl::Now());
      g.participants.push_back(g.creator);
      for (const auto& p : body.value("participants", json::array())) {
        if (!p.is_string()) return error(http::status::bad_request, "participants are phones");
        if (std::find(g.participants.begin(), g.participants.end(), p.get<std::string>()) ==
            g.participants.end()) {
          g.participants.push_back(p);
        }
      }
      for (const auto& p : g.participants) {
        if (DevicesOf(*this, p).empty()) {
          return error(http::status::not_found, "no account " + p);
        }
      }
      Bytes r(6);
      wa::RandomBytes(r);
      uint64_t n = 0;
      for (uint8_t b : r) n = n * 256 + b;
      const std::string id = absl::StrCat("120363", 100000000000ULL + n % 900000000000ULL);
      groups[id] = g;
      log_->info("group {} created with {} participants", id, g.participants.size());
      return reply(http::status::created,
                   {{"jid", id + "@g.us"}, {"participants", g.participants}});
    }
    if (parts.size() == 2 && method == http::verb::get) {
      std::string id = parts[1].substr(0, parts[1].find('@'));
      auto it = groups.find(id);
      if (it == groups.end()) return error(http::status::not_found, "no such group");
      return reply(http::status::ok, {{"jid", id + "@g.us"},
                                      {"subject", it->second.subject},
                                      {"creator", it->second.creator},
                                      {"participants", it->second.participants}});
    }
  }
  if (!parts.empty() && parts[0] == "connections") {
    if (parts.size() == 1 && method == http::verb::get) {
      json list = json::array();
      for (auto& [id, c] : conns) list.push_back(c->ToJson());
      return reply(http::status::ok, {{"connections", list}});
    }
    if (parts.size() == 3 && method == http::verb::post) {
      auto conn = FindLive(DeviceKey(parts[1]));
      if (!conn) return error(http::status::not_found, "no live connection for " + parts[1]);
      const std::string& action = parts[2];
      if (action == "drop") {
        const std::string mode = body.value("mode", "close");
        if (mode != "close" && mode != "rst") {
          return error(http::status::bad_request, "mode is \"close\" or \"rst\"");
        }
        conn->Drop(mode == "rst");
        return reply(http::status::ok, {{"dropped", conn->jid()}, {"mode", mode}});
      }
      if (action == "blackhole") {
        const bool on = body.value("enabled", true);
        conn->set_blackholed(on);
        return reply(http::status::ok, {{"blackholed", on}});
      }
      if (action == "stream-error") {
        // {"code": N[, "conflict": "replaced" | "device_removed" | ""]}
        if (!body.contains("code") || !body["code"].is_number_integer()) {
          return error(http::status::bad_request, "\"code\" (integer) is required");
        }
        if (body.contains("conflict") && !body["conflict"].is_string()) {
          return error(http::status::bad_request, "\"conflict\" is a string");
        }
        conn->SendStreamError(body["code"].get<int>(),
                              body.contains("conflict")
                                  ? std::optional<std::string>(body["conflict"].get<std::string>())
                                  : std::nullopt);
        return reply(http::status::ok, {{"sent", body["code"]}});
      }
      if (action == "conflict") {
        conn->SendAndClose(MakeNode(
            "stream:error", {}, std::vector<Node>{MakeNode("conflict", {{"type", "replaced"}})}));
        return reply(http::status::ok, {{"sent", "conflict replaced"}});
      }
      if (action == "stanza") {
        if (!StanzaTagOk(body)) return error(http::status::bad_request, kStanzaTags);
        return reply(http::status::ok,
                     {{"id", conn->SendStanza(body.value("tag", std::string("message")),
                                              body.value("from", std::string(kSomeone)), body)}});
      }
      if (action == "message") {
        const std::string from = body.value("from", std::string("15550009999@s.whatsapp.net"));
        return reply(http::status::ok, {{"id", conn->SendMessage(from)}});
      }
      return error(http::status::not_found, "unknown action " + action);
    }
  }
  return error(http::status::not_found, "no route for " + target);
}

namespace sim_internal {

json SimConn::ToJson() const {
  return {{"id", id_},
          {"jid", jid_},
          {"remote", remote_},
          {"logged_in", logged_in_},
          {"connected_at", absl::FormatTime(connected_at_)},
          {"blackholed", blackholed_},
          {"presence", presence_},
          {"presences", presences_},
          {"pings", pings_},
          {"acks", acks_},
          {"acks_matched", acks_matched_},
          {"acks_mismatched", acks_mismatched_},
          {"unacked", awaiting_ack_.size()},
          {"offline_batch_requested", offline_batch_requested_},
          {"offline_done", offline_done_},
          {"registering", registering_}};
}

}  // namespace sim_internal
}  // namespace wasentinel::sim
