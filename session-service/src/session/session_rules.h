// The rules of the session state machine that need no socket, thread or clock: which states
// WhatsApp ended, which sessions want a socket, what a close cause is recorded as, and what a
// stored transition does to a row. Pure functions, callable from any thread.
//
// Source: README "Architecture" › "Session states" and its "What WhatsApp says" table.
#pragma once

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "connection.h"
#include "session_types.h"
#include "store.h"

namespace wasentinel::session {

/// LOGGED_OUT, REPLACED and BANNED: WhatsApp ended the session; nothing reconnects it
/// automatically (a ban with a known end excepted, BanEnds).
bool IsTerminal(v1::SessionState state);

/// Should a session in this state be (re)connected when nobody asked for it: restored on a
/// status query (RESTORE_ON_DEMAND) or taken over from a replica that died? Not when WhatsApp
/// ended it, a person disconnected it, the retry schedule gave up, or a login was refused or
/// outdated.
bool WantsSocket(const SessionRecord& record, v1::SessionState state, v1::StateReason reason);

/// A temporary ban with a known end on an active, auto-connect session: it wants its socket
/// back when the ban ends.
bool BanEnds(const SessionRecord& record, v1::SessionState state);

/// May an automatic recovery (the monitor's Reconnect) bring this session back? Not what a
/// person or WhatsApp ended, nor a refused or outdated login.
bool RecoveryAllowed(const SessionRecord& record, v1::SessionState state, v1::StateReason reason);

/// The state reason a connection's close cause is recorded with.
v1::StateReason ReasonOf(wa::CloseCause cause);

/// UNAVAILABLE "session S is held by replica R; call that replica", carrying R for OwnerOf.
absl::Status HeldElsewhere(const std::string& id, const std::string& owner);

/// FAILED_PRECONDITION for an inactive session (Connect and Reconnect refuse it).
absl::Status CheckActive(const SessionRecord& record);

/// What the store's RecordTransition does to a row (pg_store.cc is the reference), done to an
/// in-memory copy, so that a session held here is answered from memory.
void MirrorTransition(SessionRecord& record, const Transition& t);

/// The settings of a stored row (UpdateSession's fields: is_active, auto_connect, account
/// name, owner e-mail) onto an in-memory copy whose state fields are newer than the row.
void SettleSettings(SessionRecord& mine, const SessionRecord& stored);

/// The keepalive and traffic facts of a connection onto `live` (its atomics: any thread).
void OverlayConnectionStats(LiveInfo& live, const wa::ConnectionHandle& conn);

/// A pairing feed's failure update.
PairingFeed::Update PairingFailure(v1::PairingUpdate::Failure::Reason reason, std::string message);

}  // namespace wasentinel::session
