//! The etcd v3 API as far as the lease store uses it: messages and methods, written by hand.
//!
//! This is what `tonic-build` would generate from etcd's protos, cut down to what weft sends
//! and reads, so that building weft needs neither `protoc` nor a build script.
//!
//! Contract:
//! - Every field's tag and wire type is etcd's own, copied from `api/etcdserverpb/rpc.proto`
//!   and `api/mvccpb/kv.proto` (etcd v3.5 / v3.6; these numbers never change in v3).
//! - A message lists only the fields weft uses. Decoding skips the fields left out, and a
//!   field left out of a request is proto3's zero value, which is what etcd reads for an
//!   unset field anyway. To use another field, copy its number and type from the `.proto`;
//!   never renumber.
//! - [`Method`] is one RPC: its HTTP/2 path (`/etcdserverpb.KV/Range`, from the service and
//!   method names) with its request and response types, so a call cannot pair them wrongly.

use std::fmt;
use std::marker::PhantomData;

// ---- mvccpb (api/mvccpb/kv.proto) ----

/// `mvccpb.KeyValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct KeyValue {
    #[prost(bytes = "vec", tag = "1")]
    pub(crate) key: Vec<u8>,
    /// The revision of the last write to the key.
    #[prost(int64, tag = "3")]
    pub(crate) mod_revision: i64,
    #[prost(bytes = "vec", tag = "5")]
    pub(crate) value: Vec<u8>,
    /// The etcd lease the key is attached to; 0 for none.
    #[prost(int64, tag = "6")]
    pub(crate) lease: i64,
}

/// `mvccpb.Event`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Event {
    /// An [`EventType`].
    #[prost(enumeration = "EventType", tag = "1")]
    pub(crate) r#type: i32,
    #[prost(message, optional, tag = "2")]
    pub(crate) kv: Option<KeyValue>,
}

/// `mvccpb.Event.EventType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub(crate) enum EventType {
    Put = 0,
    Delete = 1,
}

// ---- etcdserverpb (api/etcdserverpb/rpc.proto) ----

/// `etcdserverpb.ResponseHeader`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ResponseHeader {
    /// The store revision when the request was applied; in a watch progress notification,
    /// the revision up to which every event has been sent.
    #[prost(int64, tag = "3")]
    pub(crate) revision: i64,
    /// The raft term when the request was applied.
    #[prost(uint64, tag = "4")]
    pub(crate) raft_term: u64,
}

/// `etcdserverpb.RangeRequest`: the keys in `[key, range_end)`, or `key` alone when
/// `range_end` is empty. `serializable` (tag 7) is deliberately absent, so it is always
/// false: every read is linearizable (confirmed by the leader), never a member's possibly
/// stale local copy.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct RangeRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub(crate) key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) range_end: Vec<u8>,
}

/// `etcdserverpb.RangeResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct RangeResponse {
    #[prost(message, optional, tag = "1")]
    pub(crate) header: Option<ResponseHeader>,
    #[prost(message, repeated, tag = "2")]
    pub(crate) kvs: Vec<KeyValue>,
}

/// `etcdserverpb.PutRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct PutRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub(crate) key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) value: Vec<u8>,
    /// The etcd lease to attach the key to; 0 for none.
    #[prost(int64, tag = "3")]
    pub(crate) lease: i64,
}

/// `etcdserverpb.PutResponse` (nothing in it is read).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct PutResponse {}

/// `etcdserverpb.DeleteRangeRequest` for one key.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct DeleteRangeRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub(crate) key: Vec<u8>,
}

/// `etcdserverpb.DeleteRangeResponse` (nothing in it is read).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct DeleteRangeResponse {}

/// `etcdserverpb.Compare`: `target(key) result target_union`, e.g. `version(key) == 0`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Compare {
    /// A [`CompareResult`].
    #[prost(enumeration = "CompareResult", tag = "1")]
    pub(crate) result: i32,
    /// A [`CompareTarget`]; it must match the `target_union` variant.
    #[prost(enumeration = "CompareTarget", tag = "2")]
    pub(crate) target: i32,
    #[prost(bytes = "vec", tag = "3")]
    pub(crate) key: Vec<u8>,
    #[prost(oneof = "TargetUnion", tags = "4, 6")]
    pub(crate) target_union: Option<TargetUnion>,
}

impl Compare {
    /// `version(key) == version` (0: the key does not exist).
    pub(crate) fn version_is(key: &str, version: i64) -> Compare {
        Compare {
            result: CompareResult::Equal.into(),
            target: CompareTarget::Version.into(),
            key: key.as_bytes().to_vec(),
            target_union: Some(TargetUnion::Version(version)),
        }
    }

    /// `mod_revision(key) == revision`.
    pub(crate) fn mod_revision_is(key: &str, revision: i64) -> Compare {
        Compare {
            result: CompareResult::Equal.into(),
            target: CompareTarget::Mod.into(),
            key: key.as_bytes().to_vec(),
            target_union: Some(TargetUnion::ModRevision(revision)),
        }
    }
}

/// `etcdserverpb.Compare.CompareResult`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub(crate) enum CompareResult {
    Equal = 0,
}

/// `etcdserverpb.Compare.CompareTarget`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub(crate) enum CompareTarget {
    Version = 0,
    Mod = 2,
}

/// `etcdserverpb.Compare.target_union`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub(crate) enum TargetUnion {
    #[prost(int64, tag = "4")]
    Version(i64),
    #[prost(int64, tag = "6")]
    ModRevision(i64),
}

/// `etcdserverpb.RequestOp`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct RequestOp {
    #[prost(oneof = "Request", tags = "2")]
    pub(crate) request: Option<Request>,
}

/// `etcdserverpb.RequestOp.request`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub(crate) enum Request {
    #[prost(message, tag = "2")]
    Put(PutRequest),
}

/// `etcdserverpb.TxnRequest`: if every `compare` holds, do `success` (weft never needs a
/// `failure` branch).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct TxnRequest {
    #[prost(message, repeated, tag = "1")]
    pub(crate) compare: Vec<Compare>,
    #[prost(message, repeated, tag = "2")]
    pub(crate) success: Vec<RequestOp>,
}

/// `etcdserverpb.TxnResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct TxnResponse {
    /// Whether the compares held (and `success` was applied).
    #[prost(bool, tag = "2")]
    pub(crate) succeeded: bool,
}

/// `etcdserverpb.LeaseGrantRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct LeaseGrantRequest {
    /// The TTL in seconds.
    #[prost(int64, tag = "1")]
    pub(crate) ttl: i64,
}

/// `etcdserverpb.LeaseGrantResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct LeaseGrantResponse {
    /// The lease id.
    #[prost(int64, tag = "2")]
    pub(crate) id: i64,
    /// The TTL granted, in seconds.
    #[prost(int64, tag = "3")]
    pub(crate) ttl: i64,
}

/// `etcdserverpb.LeaseRevokeRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct LeaseRevokeRequest {
    #[prost(int64, tag = "1")]
    pub(crate) id: i64,
}

/// `etcdserverpb.LeaseRevokeResponse` (nothing in it is read).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct LeaseRevokeResponse {}

/// `etcdserverpb.WatchRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct WatchRequest {
    #[prost(oneof = "WatchRequestUnion", tags = "1")]
    pub(crate) request_union: Option<WatchRequestUnion>,
}

/// `etcdserverpb.WatchRequest.request_union`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub(crate) enum WatchRequestUnion {
    #[prost(message, tag = "1")]
    CreateRequest(WatchCreateRequest),
}

/// `etcdserverpb.WatchCreateRequest`: watch `[key, range_end)` from `start_revision`
/// (0: from now).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct WatchCreateRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub(crate) key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) range_end: Vec<u8>,
    #[prost(int64, tag = "3")]
    pub(crate) start_revision: i64,
}

/// `etcdserverpb.WatchResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct WatchResponse {
    #[prost(message, optional, tag = "1")]
    pub(crate) header: Option<ResponseHeader>,
    /// The answer to a create request.
    #[prost(bool, tag = "3")]
    pub(crate) created: bool,
    /// The watch is over (compacted, refused); no more events follow.
    #[prost(bool, tag = "4")]
    pub(crate) canceled: bool,
    /// Set when the start revision was compacted: the oldest revision still available.
    #[prost(int64, tag = "5")]
    pub(crate) compact_revision: i64,
    /// Why the watch was canceled, as etcd words it.
    #[prost(string, tag = "6")]
    pub(crate) cancel_reason: String,
    #[prost(message, repeated, tag = "11")]
    pub(crate) events: Vec<Event>,
}

/// `etcdserverpb.AuthenticateRequest`.
#[derive(Clone, PartialEq, prost::Message)]
#[prost(skip_debug)]
pub(crate) struct AuthenticateRequest {
    #[prost(string, tag = "1")]
    pub(crate) name: String,
    #[prost(string, tag = "2")]
    pub(crate) password: String,
}

impl fmt::Debug for AuthenticateRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthenticateRequest")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// `etcdserverpb.AuthenticateResponse`.
#[derive(Clone, PartialEq, prost::Message)]
#[prost(skip_debug)]
pub(crate) struct AuthenticateResponse {
    /// The token to send as `token` metadata with every call.
    #[prost(string, tag = "2")]
    pub(crate) token: String,
}

impl fmt::Debug for AuthenticateResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthenticateResponse")
            .finish_non_exhaustive()
    }
}

/// The end of the range that holds every key starting with `prefix` (etcd's
/// `GetPrefixRangeEnd`): the prefix with its last byte below 0xff incremented and what
/// follows dropped; `[0]` (to the end of the keyspace) when every byte is 0xff.
pub(crate) fn prefix_range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

// ---- the methods ----

/// One etcd RPC (see the module documentation).
pub(crate) struct Method<Req, Resp> {
    /// `/<package>.<service>/<method>`, e.g. `/etcdserverpb.KV/Range`.
    pub(crate) path: &'static str,
    types: PhantomData<fn(Req) -> Resp>,
}

impl<Req, Resp> fmt::Debug for Method<Req, Resp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.path)
    }
}

macro_rules! methods {
    ($($(#[$doc:meta])* $const:ident = $service:literal / $name:literal ($req:ty) -> $resp:ty;)*) => {
        $(
            $(#[$doc])*
            pub(crate) const $const: Method<$req, $resp> = Method {
                path: concat!("/", $service, "/", $name),
                types: PhantomData,
            };
        )*
    };
}

methods! {
    /// `KV.Range`.
    RANGE = "etcdserverpb.KV" / "Range" (RangeRequest) -> RangeResponse;
    /// `KV.Put`.
    PUT = "etcdserverpb.KV" / "Put" (PutRequest) -> PutResponse;
    /// `KV.DeleteRange`.
    DELETE_RANGE = "etcdserverpb.KV" / "DeleteRange" (DeleteRangeRequest) -> DeleteRangeResponse;
    /// `KV.Txn`.
    TXN = "etcdserverpb.KV" / "Txn" (TxnRequest) -> TxnResponse;
    /// `Lease.LeaseGrant`.
    LEASE_GRANT = "etcdserverpb.Lease" / "LeaseGrant" (LeaseGrantRequest) -> LeaseGrantResponse;
    /// `Lease.LeaseRevoke`.
    LEASE_REVOKE = "etcdserverpb.Lease" / "LeaseRevoke" (LeaseRevokeRequest) -> LeaseRevokeResponse;
    /// `Auth.Authenticate`.
    AUTHENTICATE = "etcdserverpb.Auth" / "Authenticate" (AuthenticateRequest) -> AuthenticateResponse;
    /// `Watch.Watch`: a bidirectional stream of [`WatchRequest`]s and [`WatchResponse`]s.
    WATCH = "etcdserverpb.Watch" / "Watch" (WatchRequest) -> WatchResponse;
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn prefix_range_end_is_etcds() {
        assert_eq!(prefix_range_end(b"/a/subnets/"), b"/a/subnets0");
        assert_eq!(prefix_range_end(b"a\xff"), b"b");
        assert_eq!(prefix_range_end(b"\xff\xff"), [0]);
        assert_eq!(prefix_range_end(b""), [0]);
    }

    #[test]
    fn range_requests_are_linearizable() {
        // Only tags 1 and 2 on the wire: no `serializable = true` (tag 7, varint: 0x38 0x01).
        let bytes = RangeRequest {
            key: b"/k".to_vec(),
            range_end: b"/l".to_vec(),
        }
        .encode_to_vec();
        assert_eq!(bytes, [0x0a, 2, b'/', b'k', 0x12, 2, b'/', b'l']);
    }

    #[test]
    fn methods_have_grpc_paths() {
        assert_eq!(RANGE.path, "/etcdserverpb.KV/Range");
        assert_eq!(WATCH.path, "/etcdserverpb.Watch/Watch");
        assert_eq!(AUTHENTICATE.path, "/etcdserverpb.Auth/Authenticate");
        assert_eq!(LEASE_GRANT.path, "/etcdserverpb.Lease/LeaseGrant");
    }

    /// Expected bytes assembled by hand from the protobuf encoding rules and rpc.proto's tags.
    #[test]
    fn requests_encode_as_etcd_expects() {
        let txn = TxnRequest {
            compare: vec![Compare::version_is("k", 0)],
            success: vec![RequestOp {
                request: Some(Request::Put(PutRequest {
                    key: b"k".to_vec(),
                    value: b"v".to_vec(),
                    lease: 7,
                })),
            }],
        };
        // compare { key: "k", version: 0 } (result EQUAL, target VERSION are zero and
        // omitted; the oneof's 0 is written), success { request_put { key, value, lease } }.
        assert_eq!(
            txn.encode_to_vec(),
            [
                0x0a, 0x05, 0x1a, 0x01, b'k', 0x20, 0x00, //
                0x12, 0x0a, 0x12, 0x08, 0x0a, 0x01, b'k', 0x12, 0x01, b'v', 0x18, 0x07,
            ]
        );
        let compare = Compare::mod_revision_is("k", 300);
        // target MOD (2), key "k", mod_revision 300.
        assert_eq!(
            compare.encode_to_vec(),
            [0x10, 0x02, 0x1a, 0x01, b'k', 0x30, 0xac, 0x02]
        );
        let watch = WatchRequest {
            request_union: Some(WatchRequestUnion::CreateRequest(WatchCreateRequest {
                key: b"/p/".to_vec(),
                range_end: prefix_range_end(b"/p/"),
                start_revision: 5,
            })),
        };
        assert_eq!(
            watch.encode_to_vec(),
            [0x0a, 0x0c, 0x0a, 0x03, b'/', b'p', b'/', 0x12, 0x03, b'/', b'p', b'0', 0x18, 0x05,]
        );
    }

    #[test]
    fn responses_decode_and_skip_unknown_fields() {
        // A RangeResponse with header { cluster_id: 1, member_id: 2, revision: 9,
        // raft_term: 3 }, one kv { key "k", create_revision 4, mod_revision 9, version 2,
        // value "v", lease 5 }, more: false, count: 1.
        let bytes = [
            0x0a, 0x08, 0x08, 0x01, 0x10, 0x02, 0x18, 0x09, 0x20, 0x03, //
            0x12, 0x0e, 0x0a, 0x01, b'k', 0x10, 0x04, 0x18, 0x09, 0x20, 0x02, 0x2a, 0x01, b'v',
            0x30, 0x05, //
            0x20, 0x01,
        ];
        let resp = RangeResponse::decode(&bytes[..]).expect("decodes");
        assert_eq!(
            resp.header,
            Some(ResponseHeader {
                revision: 9,
                raft_term: 3
            })
        );
        assert_eq!(
            resp.kvs,
            [KeyValue {
                key: b"k".to_vec(),
                mod_revision: 9,
                value: b"v".to_vec(),
                lease: 5,
            }]
        );
    }

    #[test]
    fn passwords_and_tokens_stay_out_of_debug_output() {
        let req = AuthenticateRequest {
            name: "root".to_owned(),
            password: "hunter2".to_owned(),
        };
        let resp = AuthenticateResponse {
            token: "tok.123".to_owned(),
        };
        let text = format!("{req:?} {resp:?}");
        assert!(
            !text.contains("hunter2") && !text.contains("tok.123"),
            "{text}"
        );
    }
}
