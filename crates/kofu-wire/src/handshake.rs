//! The opening of every connection: both nodes name themselves with a fresh nonce, then
//! each proves it knows the cluster secret with an HMAC over everything said so far.
//! Nothing but these frames is read or written before both proofs check.

use hmac::{Hmac, Mac};
use kofu_proto::wire::{Body, Frame, HANDSHAKE_ID};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::frame::{FrameReader, write_frame};
use crate::{LinkError, Secrets};

/// Which side of the handshake a proof comes from. Part of the MAC input, so a server
/// cannot pass by reflecting the client's own proof back to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Client,
    Server,
}

/// Everything both sides said before the proofs; each proof covers all of it.
#[derive(Debug, Clone, Copy)]
pub struct Transcript<'a> {
    pub client_id: &'a str,
    pub client_nonce: &'a [u8; 16],
    pub server_id: &'a str,
    pub server_nonce: &'a [u8; 16],
}

fn keyed(secret: &[u8], role: Role, t: &Transcript<'_>) -> Hmac<Sha256> {
    // HMAC takes keys of any length, so this cannot fail; an empty key is refused by
    // the transport before it gets here.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("hmac accepts any key length");
    m.update(b"kofu-wire-v1\n");
    m.update(match role {
        Role::Client => b"client\n",
        Role::Server => b"server\n",
    });
    // Length prefixes keep ("ab","c") and ("a","bc") from producing the same input.
    for id in [t.client_id, t.server_id] {
        m.update(&(id.len() as u64).to_be_bytes());
        m.update(id.as_bytes());
    }
    m.update(t.client_nonce);
    m.update(t.server_nonce);
    m
}

/// The proof `role` sends: HMAC-SHA256(secret, role ‖ both node ids ‖ both nonces).
pub fn mac(secret: &[u8], role: Role, transcript: &Transcript<'_>) -> [u8; 32] {
    keyed(secret, role, transcript)
        .finalize()
        .into_bytes()
        .into()
}

/// Checks a peer's proof in constant time, so timing reveals nothing about the secret.
pub(crate) fn verify_mac(
    secret: &[u8],
    role: Role,
    transcript: &Transcript<'_>,
    mac: &[u8; 32],
) -> bool {
    keyed(secret, role, transcript).verify_slice(mac).is_ok()
}

fn fresh_nonce() -> [u8; 16] {
    rand::random()
}

async fn send<W: AsyncWrite + Unpin>(write: &mut W, body: Body) -> Result<(), LinkError> {
    write_frame(
        write,
        &Frame {
            sent_ms: 0,
            trace: None,
            id: HANDSHAKE_ID,
            body,
        },
    )
    .await
}

/// The calling side: returns the node id the peer proved itself as.
pub(crate) async fn client<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    reader: &mut FrameReader<R>,
    write: &mut W,
    node_id: &str,
    secret: &Secrets,
) -> Result<String, LinkError> {
    let client_nonce = fresh_nonce();
    let hello = Body::Hello {
        node_id: node_id.to_owned(),
        nonce: client_nonce,
    };
    send(write, hello).await?;
    let Body::Welcome {
        node_id: server_id,
        nonce: server_nonce,
    } = reader.expect().await?.body
    else {
        return Err(LinkError::Handshake("expected welcome"));
    };
    let transcript = Transcript {
        client_id: node_id,
        client_nonce: &client_nonce,
        server_id: &server_id,
        server_nonce: &server_nonce,
    };
    let proof = Body::Proof {
        mac: mac(secret.current(), Role::Client, &transcript),
    };
    send(write, proof).await?;
    // A server that rejects our proof just closes: report that as a handshake failure.
    let answer = match reader.next().await {
        Ok(Some(frame)) => frame.body,
        Ok(None) | Err(LinkError::Closed | LinkError::Io(_)) => {
            return Err(LinkError::Handshake("rejected by peer"));
        }
        Err(e) => return Err(e),
    };
    let Body::Proof { mac: theirs } = answer else {
        return Err(LinkError::Handshake("expected proof"));
    };
    if secret
        .matching(|s| verify_mac(s, Role::Server, &transcript, &theirs))
        .is_none()
    {
        return Err(LinkError::Handshake(
            "peer does not know the cluster secret",
        ));
    }
    Ok(server_id)
}

/// The accepting side: returns the node id the peer proved itself as. `admit` is asked
/// once the peer's proof checked and before ours is sent, so a connection the server
/// gave up on meanwhile never looks established to the peer.
pub(crate) async fn server<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    reader: &mut FrameReader<R>,
    write: &mut W,
    node_id: &str,
    secret: &Secrets,
    admit: impl FnOnce() -> bool,
) -> Result<String, LinkError> {
    let Body::Hello {
        node_id: client_id,
        nonce: client_nonce,
    } = reader.expect().await?.body
    else {
        return Err(LinkError::Handshake("expected hello"));
    };
    let server_nonce = fresh_nonce();
    let welcome = Body::Welcome {
        node_id: node_id.to_owned(),
        nonce: server_nonce,
    };
    send(write, welcome).await?;
    let Body::Proof { mac: proof } = reader.expect().await?.body else {
        return Err(LinkError::Handshake("expected proof"));
    };
    let transcript = Transcript {
        client_id: &client_id,
        client_nonce: &client_nonce,
        server_id: node_id,
        server_nonce: &server_nonce,
    };
    // Closing without a word tells an unauthenticated peer nothing.
    let Some(secret) = secret.matching(|s| verify_mac(s, Role::Client, &transcript, &proof)) else {
        return Err(LinkError::Handshake(
            "peer does not know the cluster secret",
        ));
    };
    if !admit() {
        return Err(LinkError::Handshake("evicted before it completed"));
    }
    // Answered with the secret the peer proved with, which it can check.
    let ours = Body::Proof {
        mac: mac(secret, Role::Server, &transcript),
    };
    send(write, ours).await?;
    Ok(client_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_verifies_and_rejects() {
        let (cn, sn) = ([1u8; 16], [2u8; 16]);
        let t = Transcript {
            client_id: "node-a",
            client_nonce: &cn,
            server_id: "node-b",
            server_nonce: &sn,
        };
        let secret = b"cluster secret";
        let proof = mac(secret, Role::Client, &t);
        assert!(verify_mac(secret, Role::Client, &t, &proof));
        // Wrong secret, wrong role (reflection), other nonce, shifted id boundary.
        assert!(!verify_mac(b"other secret", Role::Client, &t, &proof));
        assert!(!verify_mac(secret, Role::Server, &t, &proof));
        let other = [3u8; 16];
        let replay = Transcript {
            server_nonce: &other,
            ..t
        };
        assert!(!verify_mac(secret, Role::Client, &replay, &proof));
        let shifted = Transcript {
            client_id: "node-an",
            server_id: "ode-b",
            ..t
        };
        assert!(!verify_mac(secret, Role::Client, &shifted, &proof));
        let mut flipped = proof;
        flipped[31] ^= 1;
        assert!(!verify_mac(secret, Role::Client, &t, &flipped));
    }
}
