// WhatsApp Web versions: parsing --wa_version and finding the version on the WhatsApp Web page.
#include "version.h"

#include <gtest/gtest.h>

#include "wasentinel/testing/status_matchers.h"

using ::wasentinel::testing::IsOk;

namespace wasentinel::wa {
namespace {

TEST(WaVersion, ParsesTheWebLineAndRefusesAnythingElse) {
  auto v = WaVersion::Parse("2.3000.1045649367");
  ASSERT_THAT(v, IsOk()) << v.status();
  EXPECT_EQ(v->tertiary, 1045649367u);
  EXPECT_EQ(v->ToString(), "2.3000.1045649367");
  EXPECT_EQ(kDefaultWaVersion.ToString(), "2.3000.1045649367");
  for (const char* bad :
       {"", "auto", "2.3000", "2.3000.", "2.3000.x", "2.3000.-1", "2.3000.+1", "2.3000.1.1",
        "2.3000.4294967296", "2.3000.0", "3.3000.1", "2.2412.1", " 2.3000.1", "2.3000.1 ",
        "2.3000.99999999999", "02.3000.1", "2.3000.01"}) {
    EXPECT_THAT(WaVersion::Parse(bad), ::testing::Not(IsOk())) << bad;
  }
}

TEST(WaVersion, FoundOnTheWebPageAsWhatsmeowAndBaileysReadIt) {
  // The HTML of web.whatsapp.com (whatsmeow) and sw.js with escaped quotes (Baileys).
  auto html = VersionFromPage(
      R"(<script>{"x":1,"client_revision":1045649999,"server_revision":1})</script>)");
  ASSERT_THAT(html, IsOk()) << html.status();
  EXPECT_EQ(html->ToString(), "2.3000.1045649999");
  auto js = VersionFromPage(R"(self.x=JSON.parse("{\"client_revision\": 1045650001,\"y\":2}"))");
  ASSERT_THAT(js, IsOk()) << js.status();
  EXPECT_EQ(js->tertiary, 1045650001u);
  // The first quoted key counts; unquoted mentions do not.
  auto first = VersionFromPage(R"(client_revision:7 "client_revision":8 "client_revision":9)");
  ASSERT_THAT(first, IsOk());
  EXPECT_EQ(first->tertiary, 8u);
}

TEST(WaVersion, APageWithoutAUsableVersionIsAClearError) {
  for (const char* bad :
       {"", "<html>maintenance</html>", R"("client_revision":)", R"("client_revision":"12")",
        R"("client_revision":0)", R"("client_revision":4294967296)",
        R"("client_revision":99999999999999999999)", R"("client_revision" 12)"}) {
    auto v = VersionFromPage(bad);
    EXPECT_THAT(v, ::testing::Not(IsOk())) << bad;
    EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  // Huge inputs are bounded by the caller; a long page without the key is still answered.
  EXPECT_THAT(VersionFromPage(std::string(4 << 20, 'x')), ::testing::Not(IsOk()));
}

}  // namespace
}  // namespace wasentinel::wa
