// Alert e-mails through a real SMTP server (aiosmtpd on loopback) and PostgreSQL, on a fake
// clock: the message as received (headers, both parts, masked number, how to reconnect), AUTH,
// an SMTP outage that loses nothing, a refused recipient as a dead letter, the per-recipient
// rate limit.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "alert_db.h"
#include "delivery/dispatcher.h"
#include "smtp_sink.h"
#include "wasentinel/common/proto_time.h"
#include "wasentinel/testing/fake_clock.h"
#include "wasentinel/testing/status_matchers.h"

using ::wasentinel::testing::IsOk;

namespace wasentinel::alert {
namespace {

struct Fixture : AlertDb {
  testing::SmtpSink smtp;
  wasentinel::testing::FakeClock clock;
  Sealer sealer = Sealer::FromConfig(std::string(64, 'c')).value();
  DispatcherOptions options;
  std::unique_ptr<Dispatcher> dispatcher;
  CurlWebhookSender webhooks{absl::Seconds(5), true};
  std::unique_ptr<CurlEmailSender> email;

  explicit Fixture(std::vector<std::string> smtp_flags = {}, int per_hour = 20)
      : smtp(std::move(smtp_flags)) {
    options.worker = "a";
    options.smtp.url = smtp.url();
    options.smtp.from = "WA Sentinel <alerts@sentinel.example>";
    options.smtp.reconnect_url = "https://console.example/sessions/{session_id}";
    options.emails_per_recipient_per_hour = per_hour;
    options.backoff = {absl::Seconds(10), absl::Seconds(30)};
  }
  void Build() {
    dispatcher =
        std::make_unique<Dispatcher>(store, sealer, clock, options, MakeLogger("d", "warn"));
    email = std::make_unique<CurlEmailSender>(options.smtp);
  }
  std::string Raise(const std::string& key = "session.offline/6f1c") {
    v1::RaiseAlertRequest r;
    r.set_dedup_key(key);
    r.set_event_type("session.critical");
    r.set_severity(v1::SEVERITY_CRITICAL);
    r.set_summary("Acme shop (155******67) has been offline for 6h 5m");
    auto* s = r.mutable_session();
    s->set_session_id("6f1c1f1e-0000-4000-8000-000000000001");
    s->set_tenant_id("acme");
    s->set_account_name("Acme shop");
    s->set_phone_number_masked("155******67");
    s->set_owner_email("owner@acme.example");
    s->set_state("DISCONNECTED");
    s->set_reason("KEEPALIVE_TIMEOUT");
    *s->mutable_offline_since() = ToProto(clock.Now() - absl::Hours(6) - absl::Minutes(5));
    *s->mutable_last_connected_at() = ToProto(clock.Now() - absl::Hours(6) - absl::Minutes(5));
    return store.Raise(r, {}, clock.Now()).value().alert.id();
  }
  v1::Delivery Email(const std::string& alert_id) {
    const v1::Alert alert = store.Get(alert_id).value();
    for (const auto& d : alert.deliveries()) {
      if (d.channel() == v1::Delivery::CHANNEL_EMAIL) return d;
    }
    ADD_FAILURE() << "no e-mail delivery";
    return {};
  }
};

TEST(AlertEmail, TheCriticalEmailAsReceived) {
  Fixture f;
  f.Build();
  const std::string id = f.Raise();
  EXPECT_EQ(f.dispatcher->RunOnce(f.webhooks, f.email.get()), 1);
  const auto d = f.Email(id);
  EXPECT_EQ(d.status(), v1::Delivery::STATUS_SENT) << d.last_error();
  auto got = f.smtp.Messages();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0]["mail_from"], "alerts@sentinel.example");
  EXPECT_EQ(got[0]["rcpt_tos"], nlohmann::json::array({"owner@acme.example"}));
  const std::string content = got[0]["content"];
  for (const char* expected :
       {"Subject: [WA Sentinel] CRITICAL: Acme shop is offline (155******67)",
        "From: WA Sentinel <alerts@sentinel.example>", "To: owner@acme.example",
        "Message-ID: <alert-", "@sentinel.example>", "multipart/alternative", "text/plain",
        "text/html", "155******67", "6h5m", "Last connected", "wactl sessions connect",
        "https://console.example/sessions/6f1c1f1e-0000-4000-8000-000000000001",
        "Troubleshooting"}) {
    EXPECT_NE(content.find(expected), std::string::npos) << expected << "\n" << content;
  }
  EXPECT_EQ(content.find("15551234567"), std::string::npos) << "the number is never in full";

  // The resolved notice goes to the same address.
  ASSERT_THAT(f.store.Resolve("session.offline/6f1c", "connected again", f.clock.Now()), IsOk());
  EXPECT_EQ(f.dispatcher->RunOnce(f.webhooks, f.email.get()), 1);
  got = f.smtp.Messages();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_NE(got[1]["content"].get<std::string>().find("Subject: [WA Sentinel] Resolved: Acme shop"),
            std::string::npos);
}

TEST(AlertEmail, AuthenticatesAndARefusedLoginIsRetried) {
  Fixture f({"--auth=sentinel:s3cret"});
  f.options.smtp.username = "sentinel";
  f.options.smtp.password = "wrong";
  f.Build();
  const std::string id = f.Raise();
  EXPECT_EQ(f.dispatcher->RunOnce(f.webhooks, f.email.get()), 1);
  auto d = f.Email(id);
  EXPECT_EQ(d.status(), v1::Delivery::STATUS_FAILED)
      << "a bad password may be fixed: retried; " << d.last_error();
  EXPECT_NE(d.last_error().find("535"), std::string::npos) << d.last_error();
  f.options.smtp.password = "s3cret";
  f.Build();
  f.clock.Advance(absl::Minutes(1));
  EXPECT_EQ(f.dispatcher->RunOnce(f.webhooks, f.email.get()), 1);
  EXPECT_EQ(f.Email(id).status(), v1::Delivery::STATUS_SENT);
  EXPECT_EQ(f.smtp.Messages().size(), 1u);
}

TEST(AlertEmail, AnSmtpOutageLosesNothing) {
  Fixture f;
  f.Build();
  f.smtp.Stop();
  const std::string id = f.Raise();
  EXPECT_EQ(f.dispatcher->RunOnce(f.webhooks, f.email.get()), 1);
  EXPECT_EQ(f.Email(id).status(), v1::Delivery::STATUS_FAILED);
  f.smtp.Start();  // the same port
  f.clock.Advance(absl::Minutes(1));
  EXPECT_EQ(f.dispatcher->RunOnce(f.webhooks, f.email.get()), 1);
  const auto d = f.Email(id);
  EXPECT_EQ(d.status(), v1::Delivery::STATUS_SENT);
  EXPECT_EQ(d.attempts(), 2);
  EXPECT_EQ(f.smtp.Messages().size(), 1u);
}

TEST(AlertEmail, ARefusedRecipientIsADeadLetter) {
  Fixture f({"--reject=owner@acme.example"});
  f.Build();
  const std::string id = f.Raise();
  EXPECT_EQ(f.dispatcher->RunOnce(f.webhooks, f.email.get()), 1);
  const auto d = f.Email(id);
  EXPECT_EQ(d.status(), v1::Delivery::STATUS_DEAD);
  EXPECT_NE(d.last_error().find("550"), std::string::npos) << d.last_error();
}

TEST(AlertEmail, PerRecipientRateLimit) {
  Fixture f({}, /*per_hour=*/2);
  f.Build();
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(f.Raise("k/" + std::to_string(i)));
  EXPECT_EQ(f.dispatcher->RunOnce(f.webhooks, f.email.get()), 3);
  EXPECT_EQ(f.smtp.Messages().size(), 2u);
  const auto third = f.Email(ids[2]);
  EXPECT_EQ(third.status(), v1::Delivery::STATUS_PENDING) << "waiting its turn, not failed";
  EXPECT_EQ(third.attempts(), 0);
  EXPECT_EQ(FromProto(third.next_attempt_at()), f.clock.Now() + absl::Hours(1));
  f.clock.Advance(absl::Hours(1));
  EXPECT_EQ(f.dispatcher->RunOnce(f.webhooks, f.email.get()), 1);
  EXPECT_EQ(f.smtp.Messages().size(), 3u);
}

// A throwaway certificate for 127.0.0.1 (the openssl command line), for STARTTLS.
struct Certificate {
  std::filesystem::path dir =
      std::filesystem::temp_directory_path() / absl::StrCat("was-smtp-tls-", getpid());
  std::string cert = (dir / "cert.pem").string();
  std::string key = (dir / "key.pem").string();
  Certificate() {
    std::filesystem::create_directories(dir);
    const std::string cmd = absl::StrCat(
        "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 -addext "
        "subjectAltName=IP:127.0.0.1 -keyout ",
        key, " -out ", cert, " 2>/dev/null");
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  ~Certificate() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};

TEST(AlertEmail, StartTlsWhenTheServerRequiresIt) {
  Certificate tls;
  Fixture f({"--tls-cert=" + tls.cert, "--tls-key=" + tls.key, "--auth=sentinel:s3cret"});
  f.options.smtp.username = "sentinel";
  f.options.smtp.password = "s3cret";
  f.options.smtp.require_tls = true;
  f.options.smtp.ca_file = tls.cert;
  f.Build();
  const std::string id = f.Raise();
  EXPECT_EQ(f.dispatcher->RunOnce(f.webhooks, f.email.get()), 1);
  const auto d = f.Email(id);
  EXPECT_EQ(d.status(), v1::Delivery::STATUS_SENT) << d.last_error();
  EXPECT_EQ(f.smtp.Messages().size(), 1u);
}

TEST(AlertEmail, RequiredTlsIsNotGivenUp) {
  Fixture f;  // a server without STARTTLS
  f.options.smtp.require_tls = true;
  f.Build();
  const std::string id = f.Raise();
  EXPECT_EQ(f.dispatcher->RunOnce(f.webhooks, f.email.get()), 1);
  const auto d = f.Email(id);
  EXPECT_EQ(d.status(), v1::Delivery::STATUS_FAILED) << "not sent in the clear";
  EXPECT_TRUE(f.smtp.Messages().empty());
}

TEST(AlertEmail, TemplatesFromADirectoryAreTheBuiltInOnes) {
  auto from_dir = EmailTemplates::FromDir(WAS_TEMPLATE_DIR);
  ASSERT_THAT(from_dir, IsOk()) << from_dir.status();
  EXPECT_EQ(from_dir->text, EmailTemplates::Builtin().text);
  EXPECT_EQ(from_dir->html, EmailTemplates::Builtin().html);
  EXPECT_EQ(EmailTemplates::FromDir("/nonexistent").status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace wasentinel::alert
