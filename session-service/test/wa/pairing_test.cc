// Pairing by phone-number code (as whatsmeow does it), both sides in memory: the companion's
// request, the phone's answer, the key bundle, and the adv secret both must derive.
#include "pairing.h"

#include <gtest/gtest.h>

#include <set>

#include "wasentinel/testing/status_matchers.h"

using ::wasentinel::testing::IsOk;

namespace wasentinel::wa {
namespace {

const Node& Reg(const Node& n) { return *n.Child("link_code_companion_reg"); }

TEST(LinkCode, CodesAreEightCharactersOfTheAlphabet) {
  std::set<std::string> seen;
  for (int i = 0; i < 200; ++i) {
    const std::string code = NewLinkCode();
    ASSERT_EQ(code.size(), 8u);
    for (char c : code) EXPECT_NE(kLinkCodeAlphabet.find(c), std::string_view::npos) << code;
    seen.insert(code);
  }
  EXPECT_GT(seen.size(), 195u);
  EXPECT_EQ(FormatLinkCode("ABCDEFGH"), "ABCD-EFGH");
}

TEST(LinkCode, WrappingOpensOnlyWithTheSameCode) {
  const KeyPair k = KeyPair::Generate();
  const Bytes wrapped = WrapWithLinkCode("ABCDEFGH", k.pub);
  ASSERT_EQ(wrapped.size(), 80u);
  EXPECT_EQ(UnwrapWithLinkCode("ABCDEFGH", wrapped).value(), k.pub);
  EXPECT_NE(UnwrapWithLinkCode("ABCDEFGJ", wrapped).value(), k.pub);
  EXPECT_EQ(UnwrapWithLinkCode("ABCDEFGH", ByteView(wrapped).first(79)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(LinkCode, BothSidesDeriveTheSameAdvSecret) {
  const DeviceCredentials creds = DeviceCredentials::Generate();
  const KeyPair primary = KeyPair::Generate();
  const LinkCodeRequest req = CompanionHello("15551234567", creds, "Chrome (Linux)");
  const Node& hello_reg = Reg(req.iq);
  EXPECT_EQ(hello_reg.AttrOr("stage"), "companion_hello");
  EXPECT_EQ(hello_reg.AttrOr("jid"), "15551234567@s.whatsapp.net");
  const ByteView wrapped =
      hello_reg.Child("link_code_pairing_wrapped_companion_ephemeral_pub")->ContentBytes();

  auto phone = PhonePrimaryHello(req.code, wrapped, "REF1", primary, "n1");
  ASSERT_THAT(phone, IsOk()) << phone.status();
  EXPECT_EQ(phone->companion_ephemeral, req.ephemeral.pub);
  EXPECT_EQ(phone->notification.AttrOr("type"), "link_code_companion_reg");

  auto finish = AnswerPrimaryHello(phone->notification, req, "REF1", "15551234567", creds);
  ASSERT_THAT(finish, IsOk()) << finish.status();
  EXPECT_EQ(Reg(finish->iq).AttrOr("stage"), "companion_finish");
  auto opened = PhoneOpenCompanionFinish(finish->iq, *phone, primary);
  ASSERT_THAT(opened, IsOk()) << opened.status();
  EXPECT_EQ(opened->adv_secret, finish->adv_secret);
  EXPECT_EQ(opened->identity_pub, creds.identity_key.pub);
  EXPECT_EQ(opened->ref, "REF1");
  EXPECT_NE(finish->adv_secret, creds.adv_secret) << "the random adv secret is replaced";

  // A notification for another ref is not ours.
  EXPECT_EQ(
      AnswerPrimaryHello(phone->notification, req, "REF2", "15551234567", creds).status().code(),
      absl::StatusCode::kInvalidArgument);
}

TEST(LinkCode, AWrongCodeFailsAtTheKeyBundle) {
  const DeviceCredentials creds = DeviceCredentials::Generate();
  const KeyPair primary = KeyPair::Generate();
  const LinkCodeRequest req = CompanionHello("15551234567", creds, "Chrome (Linux)");
  const ByteView wrapped =
      Reg(req.iq).Child("link_code_pairing_wrapped_companion_ephemeral_pub")->ContentBytes();
  std::string typed = req.code;
  typed[7] = typed[7] == 'Z' ? 'Y' : 'Z';
  auto phone = PhonePrimaryHello(typed, wrapped, "REF1", primary, "n1");
  ASSERT_THAT(phone, IsOk());
  auto finish = AnswerPrimaryHello(phone->notification, req, "REF1", "15551234567", creds);
  ASSERT_THAT(finish, IsOk()) << "the companion cannot tell; the phone can";
  EXPECT_EQ(PhoneOpenCompanionFinish(finish->iq, *phone, primary).status().code(),
            absl::StatusCode::kUnauthenticated);
}

}  // namespace
}  // namespace wasentinel::wa
