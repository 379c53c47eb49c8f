#include "message_content.h"

#include <google/protobuf/unknown_field_set.h>

#include <algorithm>
#include <map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "wa_message.pb.h"

namespace wasentinel::signal {
namespace {

namespace e2e = ::wasentinel::wa::e2e;

// WhatsApp's names of Message's content fields by number (whatsmeow proto/waE2E, Baileys
// WAProto; the same numbers in both up to 93). Not content: 2 and 15 (sender keys), 35
// (messageContextInfo).
const std::map<int, const char*>& FieldNames() {
  static const auto* names = new std::map<int, const char*>{
      {1, "conversation"},
      {3, "imageMessage"},
      {4, "contactMessage"},
      {5, "locationMessage"},
      {6, "extendedTextMessage"},
      {7, "documentMessage"},
      {8, "audioMessage"},
      {9, "videoMessage"},
      {10, "call"},
      {11, "chat"},
      {12, "protocolMessage"},
      {13, "contactsArrayMessage"},
      {14, "highlyStructuredMessage"},
      {16, "sendPaymentMessage"},
      {18, "liveLocationMessage"},
      {22, "requestPaymentMessage"},
      {23, "declinePaymentRequestMessage"},
      {24, "cancelPaymentRequestMessage"},
      {25, "templateMessage"},
      {26, "stickerMessage"},
      {28, "groupInviteMessage"},
      {29, "templateButtonReplyMessage"},
      {30, "productMessage"},
      {31, "deviceSentMessage"},
      {36, "listMessage"},
      {37, "viewOnceMessage"},
      {38, "orderMessage"},
      {39, "listResponseMessage"},
      {40, "ephemeralMessage"},
      {41, "invoiceMessage"},
      {42, "buttonsMessage"},
      {43, "buttonsResponseMessage"},
      {44, "paymentInviteMessage"},
      {45, "interactiveMessage"},
      {46, "reactionMessage"},
      {47, "stickerSyncRmrMessage"},
      {48, "interactiveResponseMessage"},
      {49, "pollCreationMessage"},
      {50, "pollUpdateMessage"},
      {51, "keepInChatMessage"},
      {53, "documentWithCaptionMessage"},
      {54, "requestPhoneNumberMessage"},
      {55, "viewOnceMessageV2"},
      {56, "encReactionMessage"},
      {58, "editedMessage"},
      {59, "viewOnceMessageV2Extension"},
      {60, "pollCreationMessageV2"},
      {61, "scheduledCallCreationMessage"},
      {62, "groupMentionedMessage"},
      {63, "pinInChatMessage"},
      {64, "pollCreationMessageV3"},
      {65, "scheduledCallEditMessage"},
      {66, "ptvMessage"},
      {67, "botInvokeMessage"},
      {69, "callLogMesssage"},
      {70, "messageHistoryBundle"},
      {71, "encCommentMessage"},
      {72, "bcallMessage"},
      {74, "lottieStickerMessage"},
      {75, "eventMessage"},
      {76, "encEventResponseMessage"},
      {77, "commentMessage"},
      {78, "newsletterAdminInviteMessage"},
      {80, "placeholderMessage"},
      {82, "secretEncryptedMessage"},
      {83, "albumMessage"},
      {85, "eventCoverImage"},
      {86, "stickerPackMessage"},
      {87, "statusMentionMessage"},
      {88, "pollResultSnapshotMessage"},
      {90, "pollCreationOptionImageMessage"},
      {91, "associatedChildMessage"},
      {92, "groupStatusMentionMessage"},
      {93, "pollCreationMessageV4"},
  };
  return *names;
}

bool NotContent(int number) { return number == 2 || number == 15 || number == 35; }

// The numbers of the fields present in `m`, known or not, in order.
std::vector<int> PresentFields(const e2e::Message& m) {
  std::vector<int> out;
  std::vector<const google::protobuf::FieldDescriptor*> known;
  m.GetReflection()->ListFields(m, &known);
  for (const auto* f : known) out.push_back(f->number());
  const auto& unknown = m.GetReflection()->GetUnknownFields(m);
  for (int i = 0; i < unknown.field_count(); ++i) out.push_back(unknown.field(i).number());
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

// The envelope inside `m` that holds the real message, if `m` is one.
const e2e::Message* Envelope(const e2e::Message& m) {
  if (m.has_ephemeral_message()) return &m.ephemeral_message().message();
  if (m.has_view_once_message()) return &m.view_once_message().message();
  if (m.has_view_once_message_v2()) return &m.view_once_message_v2().message();
  if (m.has_view_once_message_v2_extension()) {
    return &m.view_once_message_v2_extension().message();
  }
  if (m.has_document_with_caption_message()) return &m.document_with_caption_message().message();
  return nullptr;
}

void Describe(const e2e::Message& m, MessageContent& out) {
  if (m.has_sender_key_distribution_message() && !out.sender_key) {
    const auto& skd = m.sender_key_distribution_message();
    const std::string& bytes = skd.axolotl_sender_key_distribution_message();
    out.sender_key.emplace(skd.group_id(), Bytes(bytes.begin(), bytes.end()));
  }
  for (int number : PresentFields(m)) {
    if (NotContent(number)) continue;
    const auto& names = FieldNames();
    auto it = names.find(number);
    out.type = it != names.end() ? it->second : absl::StrCat("field:", number);
    break;
  }
  if (m.has_conversation()) {
    out.text = m.conversation();
  } else if (m.has_extended_text_message() && m.extended_text_message().has_text()) {
    out.text = m.extended_text_message().text();
  }
}

}  // namespace

absl::StatusOr<MessageContent> ParseMessageContent(ByteView plaintext) {
  e2e::Message m;
  if (!m.ParseFromArray(plaintext.data(), static_cast<int>(plaintext.size()))) {
    return absl::InvalidArgumentError("the plaintext is not a WhatsApp Message protobuf");
  }
  MessageContent out;
  const e2e::Message* content = &m;
  out.raw.assign(plaintext.begin(), plaintext.end());
  if (m.has_device_sent_message()) {
    const auto& dsm = m.device_sent_message();
    out.device_sent_to = dsm.destination_jid();
    content = &dsm.message();
    std::string inner;
    content->SerializeToString(&inner);
    out.raw.assign(inner.begin(), inner.end());
    if (m.has_sender_key_distribution_message()) Describe(m, out);  // a key beside it
  }
  for (int depth = 0;; ++depth) {
    const e2e::Message* inner = Envelope(*content);
    if (!inner) break;
    if (depth == 4) return absl::InvalidArgumentError("message envelopes nested too deep");
    if (content->has_sender_key_distribution_message()) Describe(*content, out);
    content = inner;
  }
  Describe(*content, out);
  return out;
}

Bytes TextMessage(const std::string& text, const std::string& device_sent_chat) {
  e2e::Message m;
  if (device_sent_chat.empty()) {
    m.set_conversation(text);
  } else {
    auto* dsm = m.mutable_device_sent_message();
    dsm->set_destination_jid(device_sent_chat);
    dsm->mutable_message()->set_conversation(text);
  }
  std::string out;
  m.SerializeToString(&out);
  return Bytes(out.begin(), out.end());
}

absl::StatusOr<Bytes> DeviceSentCopy(ByteView message, const std::string& chat) {
  e2e::Message inner;
  if (!inner.ParseFromArray(message.data(), static_cast<int>(message.size()))) {
    return absl::InvalidArgumentError("not a Message protobuf");
  }
  e2e::Message m;
  auto* dsm = m.mutable_device_sent_message();
  dsm->set_destination_jid(chat);
  *dsm->mutable_message() = std::move(inner);
  std::string out;
  m.SerializeToString(&out);
  return Bytes(out.begin(), out.end());
}

}  // namespace wasentinel::signal
