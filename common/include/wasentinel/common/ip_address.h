// Which IP addresses are on the public internet: the one classifier that webhook targets are
// checked with, when an endpoint is created and again on every address a send is about to
// connect to (alert-service/src/delivery/webhook.h).
#pragma once

#include <string_view>

namespace wasentinel {

/// Is `ip` (textual IPv4, or IPv6 with or without brackets) a globally reachable unicast
/// address? Sources: the IANA IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890 and
/// its updates). False for anything that does not parse and for:
///  - IPv4: 0/8, 10/8, 100.64/10 (CGNAT), 127/8, 169.254/16, 172.16/12, 192.0.0/24,
///    192.0.2/24, 192.88.99/24, 192.168/16, 198.18/15 (benchmarking), 198.51.100/24,
///    203.0.113/24, 224/4 and 240/4 (with the broadcast address);
///  - IPv6 outside 2000::/3 (::, ::1, IPv4-compatible ::/96, 100::/64, fc00::/7, fe80::/10,
///    multicast, …), and inside it 2001::/23 (Teredo and other IETF assignments),
///    2001:db8::/32 and 3fff::/20 (documentation);
///  - IPv6 forms that embed an IPv4 address which is not public: IPv4-mapped ::ffff:0:0/96,
///    NAT64 64:ff9b::/96 (64:ff9b:1::/48 is refused whole) and 6to4 2002::/16.
bool IsPublicAddress(std::string_view ip);

}  // namespace wasentinel
