// The message calls end to end in one process (session/stack.h): SendMessage through the
// outbox to wa-sim's phone of a customer, statuses from the server ack and receipts,
// idempotency, bad input, sending queued while offline, ListMessages, MarkRead and
// WatchMessages over the message log (README "Messages"; docs/wa-protocol.md §11).
#include <pqxx/pqxx>

#include "absl/strings/match.h"
#include "e2ee/message_content.h"
#include "session/stack.h"
#include "wasentinel/common/bytes.h"
#include "wasentinel/testing/status_matchers.h"

namespace wasentinel::session {
namespace {

using ::wasentinel::testing::Eventually;
using ::wasentinel::testing::IsOk;

struct Sent {
  grpc::Status status;
  v1::Message message;
};

Sent Send(Stack& s, const std::string& session, const std::string& to, const std::string& text,
          const std::string& client_id = "") {
  grpc::ClientContext ctx;
  v1::SendMessageRequest req;
  req.set_session_id(session);
  req.set_to(to);
  req.set_text(text);
  req.set_client_message_id(client_id);
  v1::SendMessageResponse resp;
  Sent out;
  out.status = s.stub->SendMessage(&ctx, req, &resp);
  out.message = resp.message();
  return out;
}

v1::Message Get(Stack& s, const std::string& session, const std::string& id) {
  grpc::ClientContext ctx;
  v1::GetMessageRequest req;
  req.set_session_id(session);
  req.set_message_id(id);
  v1::GetMessageResponse resp;
  EXPECT_TRUE(s.stub->GetMessage(&ctx, req, &resp).ok());
  return resp.message();
}

// The texts wa-sim's phone of `phone` decrypted.
std::vector<std::string> PhoneTexts(Stack& s, const std::string& phone) {
  const nlohmann::json got = s.sim.control().Get("/accounts/" + phone + "/phone").value();
  std::vector<std::string> out;
  for (const auto& m : got["inbox"]) {
    auto plain = Base64Decode(m["plaintext"].get<std::string>());
    if (!plain.ok()) continue;
    auto content = signal::ParseMessageContent(*plain);
    if (content.ok() && content->text) out.push_back(*content->text);
  }
  return out;
}

bool Has(const std::vector<std::string>& texts, const std::string& text) {
  return std::find(texts.begin(), texts.end(), text) != texts.end();
}

TEST(Messages, SendQueueStatusesAndTheLog) {
  // Signal state leaves memory after 300 ms idle: everything below also holds when it is read
  // again from PostgreSQL between messages.
  Stack s([](Options& o) { o.messenger.idle_state = absl::Milliseconds(300); },
          [](sim::SimOptions& o) { o.phone_receipts = true; });
  Watcher w(*s.stub);
  auto context = signal::Context::Create().value();
  auto session = s.Create("shop", SignalCreds(s, 15550096001, *context).dump()).value();
  ASSERT_TRUE(w.WaitFor(session.id(), v1::SESSION_STATE_CONNECTED));
  ASSERT_TRUE(Eventually([&] {
    const nlohmann::json all = s.sim.control().Get("/devices").value();
    for (const auto& d : all["devices"]) {
      if (d["jid"] == "15550096001:5") return d["prekeys"] == 812;
    }
    return false;
  })) << "the session's pre-keys uploaded";

  // A customer writes first (which also makes the customer's account at wa-sim).
  ASSERT_THAT(s.sim.control().Post("/accounts/15550096999/send",
                                   {{"to", "15550096001"}, {"text", "do you deliver?"}}),
              IsOk());

  ASSERT_TRUE(Eventually([&] {
    pqxx::connection c(s.db.url());
    pqxx::nontransaction tx(c);
    return tx.exec_params1("SELECT count(*) FROM messages WHERE session_id = $1::uuid",
                           session.id())[0]
               .as<int>() == 1;
  })) << "the customer's message stored";

  // The shop answers through the API: queued PENDING with a WhatsApp id, then sent.
  Sent sent = Send(s, session.id(), "+1 555 009 6999", "yes, every day", "answer-1");
  ASSERT_TRUE(sent.status.ok()) << sent.status.error_message();
  EXPECT_EQ(sent.message.status(), v1::MESSAGE_STATUS_PENDING);
  EXPECT_TRUE(absl::StartsWith(sent.message.message_id(), "3EB0"));
  EXPECT_EQ(sent.message.message_id().size(), 22u);
  EXPECT_EQ(sent.message.chat(), "15550096999@s.whatsapp.net");
  EXPECT_TRUE(sent.message.from_me());
  EXPECT_EQ(sent.message.text(), "yes, every day");
  ASSERT_TRUE(Eventually([&] { return Has(PhoneTexts(s, "15550096999"), "yes, every day"); }))
      << "the customer's phone decrypts it";
  // The server's ack, then the phone's delivery receipt.
  ASSERT_TRUE(Eventually([&] {
    return Get(s, session.id(), sent.message.message_id()).status() == v1::MESSAGE_STATUS_DELIVERED;
  })) << Get(s, session.id(), sent.message.message_id()).DebugString();

  // Idempotent on client_message_id; the same id with another text is refused.
  Sent again = Send(s, session.id(), "15550096999", "yes, every day", "answer-1");
  ASSERT_TRUE(again.status.ok());
  EXPECT_EQ(again.message.message_id(), sent.message.message_id());
  EXPECT_EQ(Send(s, session.id(), "15550096999", "no", "answer-1").status.error_code(),
            grpc::StatusCode::ALREADY_EXISTS);

  // Bad input.
  EXPECT_EQ(Send(s, session.id(), "not a number", "hi").status.error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Send(s, session.id(), "15550096999", "").status.error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Send(s, session.id(), "15550096999", std::string(70000, 'a')).status.error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(
      Send(s, "00000000-0000-0000-0000-000000000000", "15550096999", "hi").status.error_code(),
      grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Send(s, "nope", "15550096999", "hi").status.error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  // A number WhatsApp does not know: FAILED with the reason.
  Sent nobody = Send(s, session.id(), "15550096777", "anyone there?");
  ASSERT_TRUE(nobody.status.ok());
  ASSERT_TRUE(Eventually([&] {
    return Get(s, session.id(), nobody.message.message_id()).status() == v1::MESSAGE_STATUS_FAILED;
  }));
  EXPECT_THAT(Get(s, session.id(), nobody.message.message_id()).failure(),
              ::testing::HasSubstr("not on WhatsApp"));
  // The failed send counts as trouble in the session's facts (health-monitor scores it).
  {
    grpc::ClientContext ctx;
    v1::BulkGetSessionsRequest req;
    req.add_ids(session.id());
    v1::BulkGetSessionsResponse resp;
    ASSERT_TRUE(s.stub->BulkGetSessions(&ctx, req, &resp).ok());
    ASSERT_EQ(resp.sessions_size(), 1);
    EXPECT_EQ(resp.sessions(0).failed_sends_last_hour(), 1);
    EXPECT_EQ(resp.sessions(0).undecryptable_last_hour(), 0);
  }

  // Sent while the session is down: queued, then sent in order once it is back.
  {
    grpc::ClientContext ctx;
    v1::DisconnectRequest req;
    req.set_id(session.id());
    v1::DisconnectResponse resp;
    ASSERT_TRUE(s.stub->Disconnect(&ctx, req, &resp).ok());
  }
  ASSERT_TRUE(w.WaitForLatest(session.id(), v1::SESSION_STATE_DISCONNECTED));
  std::vector<std::string> queued;
  for (int i = 0; i < 3; ++i) {
    Sent q = Send(s, session.id(), "15550096999", "while away " + std::to_string(i));
    ASSERT_TRUE(q.status.ok());
    queued.push_back(q.message.message_id());
  }
  EXPECT_EQ(Get(s, session.id(), queued[0]).status(), v1::MESSAGE_STATUS_PENDING);
  {
    grpc::ClientContext ctx;
    v1::ConnectRequest req;
    req.set_id(session.id());
    v1::ConnectResponse resp;
    ASSERT_TRUE(s.stub->Connect(&ctx, req, &resp).ok());
  }
  ASSERT_TRUE(Eventually(
      [&] { return Get(s, session.id(), queued[2]).status() == v1::MESSAGE_STATUS_DELIVERED; }));
  {
    auto texts = PhoneTexts(s, "15550096999");
    auto at = [&](const std::string& t) { return std::find(texts.begin(), texts.end(), t); };
    EXPECT_LT(at("while away 0"), at("while away 1"));
    EXPECT_LT(at("while away 1"), at("while away 2"));
    EXPECT_NE(at("while away 2"), texts.end());
  }

  // The chat, newest first, paged.
  std::string customer_message;
  {
    grpc::ClientContext ctx;
    v1::ListMessagesRequest req;
    req.set_session_id(session.id());
    req.set_chat("15550096999");
    req.set_page_size(3);
    v1::ListMessagesResponse resp;
    ASSERT_TRUE(s.stub->ListMessages(&ctx, req, &resp).ok());
    ASSERT_EQ(resp.messages_size(), 3);
    EXPECT_EQ(resp.messages(0).text(), "while away 2");
    ASSERT_FALSE(resp.next_page_token().empty());
    grpc::ClientContext ctx2;
    req.set_page_token(resp.next_page_token());
    req.set_page_size(10);
    v1::ListMessagesResponse rest;
    ASSERT_TRUE(s.stub->ListMessages(&ctx2, req, &rest).ok());
    ASSERT_EQ(rest.messages_size(), 2)
        << rest.DebugString() << resp.DebugString();  // the answer and the question
    EXPECT_EQ(rest.messages(1).text(), "do you deliver?");
    EXPECT_EQ(rest.messages(1).status(), v1::MESSAGE_STATUS_RECEIVED);
    EXPECT_TRUE(rest.next_page_token().empty());
    customer_message = rest.messages(1).message_id();
  }

  // MarkRead: the customer's message is READ and its read receipt goes out.
  {
    grpc::ClientContext ctx;
    v1::MarkReadRequest req;
    req.set_session_id(session.id());
    req.set_chat("+15550096999");
    req.add_message_ids(customer_message);
    req.add_message_ids("NOSUCHID");
    v1::MarkReadResponse resp;
    ASSERT_TRUE(s.stub->MarkRead(&ctx, req, &resp).ok());
    ASSERT_EQ(resp.marked_size(), 1);
    ASSERT_EQ(resp.not_found_size(), 1);
  }
  EXPECT_EQ(Get(s, session.id(), customer_message).status(), v1::MESSAGE_STATUS_READ);
  ASSERT_TRUE(Eventually([&] {
    pqxx::connection c(s.db.url());
    pqxx::nontransaction tx(c);
    return tx.exec_params1(
                 "SELECT count(*) FROM messages WHERE session_id = $1::uuid AND"
                 " read_receipt_due",
                 session.id())[0]
               .as<int>() == 0;
  })) << "the read receipt was sent";

  // The log replays every message once, in its latest state, then goes on live.
  grpc::ClientContext watch_ctx;
  watch_ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  v1::WatchMessagesRequest watch_req;
  watch_req.set_session_id(session.id());
  watch_req.set_after_sequence(0);
  auto reader = s.stub->WatchMessages(&watch_ctx, watch_req);
  absl::flat_hash_map<std::string, v1::Message> latest;
  int64_t last = 0;
  v1::Message m;
  while (latest.size() < 6 && reader->Read(&m)) {
    EXPECT_GT(m.sequence(), last);
    last = m.sequence();
    latest[m.message_id()] = m;
  }
  ASSERT_EQ(latest.size(), 6u);  // the question, the answer, the failed one, three queued
  EXPECT_EQ(latest[sent.message.message_id()].status(), v1::MESSAGE_STATUS_DELIVERED);
  EXPECT_EQ(latest[customer_message].status(), v1::MESSAGE_STATUS_READ);
  // Live: the next message arrives on the same stream.
  Sent live = Send(s, session.id(), "15550096999", "one more thing");
  ASSERT_TRUE(live.status.ok());
  bool seen = false;
  while (!seen && reader->Read(&m)) seen = m.message_id() == live.message.message_id();
  EXPECT_TRUE(seen);
  watch_ctx.TryCancel();

  // Logged out, the session has no linked device to send from: refused, nothing queued.
  {
    grpc::ClientContext ctx;
    v1::LogoutRequest req;
    req.set_id(session.id());
    v1::LogoutResponse resp;
    ASSERT_TRUE(s.stub->Logout(&ctx, req, &resp).ok());
  }
  ASSERT_TRUE(w.WaitForLatest(session.id(), v1::SESSION_STATE_LOGGED_OUT));
  auto stored = [&] {
    pqxx::connection c(s.db.url());
    pqxx::nontransaction tx(c);
    return tx
        .exec_params1("SELECT count(*) FROM messages WHERE session_id = $1::uuid", session.id())[0]
        .as<int>();
  };
  const int before = stored();
  Sent after_logout = Send(s, session.id(), "15550096999", "anyone there?");
  EXPECT_EQ(after_logout.status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(after_logout.status.error_message(), ::testing::HasSubstr("pair it first"));
  EXPECT_EQ(stored(), before) << "nothing queued";
}

TEST(Messages, MessageScopesAreGrantedByName) {
  Stack s([](Options& o) {
    o.runtime.api_keys =
        "ops:admin:ops-key-0123456789,dash:read:dash-key-0123456789,"
        "bot:messages:send+messages:read:bot-key-0123456789";
  });
  auto call = [&](const std::string& key) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("x-api-key", key);
    v1::ListMessagesRequest req;
    req.set_session_id("00000000-0000-0000-0000-000000000000");
    req.set_chat("15550096999");
    v1::ListMessagesResponse resp;
    return s.stub->ListMessages(&ctx, req, &resp).error_code();
  };
  EXPECT_EQ(call("dash-key-0123456789"), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(call("bot-key-0123456789"), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(call("ops-key-0123456789"), grpc::StatusCode::NOT_FOUND);
  grpc::ClientContext ctx;
  ctx.AddMetadata("x-api-key", "bot-key-0123456789");
  v1::GetCallerResponse who;
  ASSERT_TRUE(s.stub->GetCaller(&ctx, {}, &who).ok());
  EXPECT_EQ(who.scope(), "none");
  EXPECT_EQ(who.message_scopes_size(), 2);
}

}  // namespace
}  // namespace wasentinel::session
