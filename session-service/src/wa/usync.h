// Device lists (usync): which linked devices a WhatsApp account has, as a sender must know them
// to encrypt a message for each (docs/wa-protocol.md §11). Shapes as whatsmeow sends and reads
// them (user.go usync, GetUserDevices, parseDeviceList): an `<iq xmlns="usync" type="get">`
// with `<usync mode="query" context="message">`, `<query><devices version="2"/></query>` and a
// `<list>` of `<user jid/>`; the answer lists per user `<devices><device-list><device id/>…`.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "binary_node.h"

namespace wasentinel::wa {

/// The query for the devices of `users` (user parts: "15551234567"); `sid` is the query's id.
Node DeviceListQuery(const std::vector<std::string>& users, const std::string& sid);

/// The answer: device ids per user part (a user whose list is missing or malformed is absent).
/// INVALID_ARGUMENT when there is no `<usync><list>`.
absl::StatusOr<std::map<std::string, std::vector<uint32_t>>> ParseDeviceLists(const Node& iq);

/// whatsmeow's participantListHashV2, the `phash` the server puts on a message's ack: "2:" and
/// the unpadded base64 of the first 6 bytes of SHA-256 over the devices' "user.0:device@server"
/// forms, sorted and concatenated. `devices`: (user part, device id) on s.whatsapp.net.
std::string ParticipantHash(const std::vector<std::pair<std::string, uint32_t>>& devices);

}  // namespace wasentinel::wa
