// What a decrypted WhatsApp message says: the `Message` protobuf a `pkmsg`, `msg` or `skmsg`
// carries once unpadded (proto/wa_message.proto; docs/wa-protocol.md §11). Text is read; every
// other kind (media, reactions, edits, polls, …) is named by its type and kept as bytes, so
// nothing a sender wrote is dropped.
#pragma once

#include <optional>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "wasentinel/common/bytes.h"

namespace wasentinel::signal {

struct MessageContent {
  /// WhatsApp's name of the content field present, after unwrapping ephemeral, view-once and
  /// document-with-caption envelopes: "conversation" and "extendedTextMessage" are text;
  /// "imageMessage", "reactionMessage", "protocolMessage", "editedMessage", … are kept as they
  /// are; "field:N" for a number this build does not name; "" when only a sender key (or
  /// nothing) came.
  std::string type;
  /// The text of a text message (or of the caption-less text inside an envelope).
  std::optional<std::string> text;
  /// deviceSentMessage: the account's own other device sent this to that chat (a JID); the
  /// other fields describe the message inside.
  std::optional<std::string> device_sent_to;
  /// A group's sender key distribution: the group JID and libsignal's distribution message.
  std::optional<std::pair<std::string, Bytes>> sender_key;
  /// The Message bytes as they came (for deviceSentMessage, the inner message's).
  Bytes raw;
};

/// Reads an unpadded plaintext. INVALID_ARGUMENT when it is not a `Message` protobuf (or nests
/// envelopes more than 4 deep).
absl::StatusOr<MessageContent> ParseMessageContent(ByteView plaintext);

/// A text message as a device writes it: `conversation`, or — for our own other devices —
/// inside a deviceSentMessage naming `chat`.
Bytes TextMessage(const std::string& text, const std::string& device_sent_chat = "");

/// What our own other devices get of `message` (a Message protobuf) we sent to `chat`: a
/// Message holding a deviceSentMessage (whatsmeow send.go marshalMessage). INVALID_ARGUMENT
/// when `message` is not a Message protobuf.
absl::StatusOr<Bytes> DeviceSentCopy(ByteView message, const std::string& chat);

}  // namespace wasentinel::signal
