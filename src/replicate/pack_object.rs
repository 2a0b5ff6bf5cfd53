//! How a sealed pack travels to a remote.
//!
//! ```text
//! object := "PVRPACK1" index_len:u32le index:[index_len] bodies padding
//! index  := envelope(KIND_PACK_INDEX, "PVPKIDX1" id:i64le n:u32le magic:[8]
//!                    header:[52]*n tail_len:u32le tail:[tail_len])
//! bodies := the ciphertext of each record, in order
//! padding:= EnvelopeKey::fill_padding(index), to the Padmé length of the whole
//! ```
//!
//! A pack's blocks are encrypted and authenticated already, each under its
//! own nonce: what must not reach the remote in clear is the rest, the
//! record headers (block ids and plain lengths, so file sizes) and the
//! pack's trailer. Those go in a small envelope; the bodies travel as they
//! are, and the padding (indistinguishable from them) hides the pack's
//! exact size. Sealing the whole pack in an envelope, as the first release
//! did (kind `KIND_PACK`, still read), costs two more AES passes over every
//! byte, one to seal and one to check the seal.
//!
//! Nothing is lost in the split: `decode` gives the pack back byte for
//! byte. The bodies are authenticated by the chain: a head (an envelope)
//! names the object by the BLAKE3 hash of all its bytes.

use super::objects;
use super::ReplicateError;
use crate::crypto::{padme, Compress, EnvelopeKey};
use crate::store::{sealed_layout, PackId, RECORD_HEADER_LEN};

const MAGIC: &[u8; 8] = b"PVRPACK1";
const INDEX_MAGIC: &[u8; 8] = b"PVPKIDX1";
/// Where the index starts: after the magic and its length.
const INDEX_AT: usize = MAGIC.len() + 4;

/// The object that carries sealed pack `id`, whose bytes are `pack`.
/// Fails for bytes that are not a whole sealed pack.
pub fn encode(key: &EnvelopeKey, id: i64, pack: &[u8]) -> Result<Vec<u8>, ReplicateError> {
    let layout = sealed_layout(PackId::from_i64(id), pack).map_err(ReplicateError::Store)?;
    let tail = &pack[layout.tail.clone()];
    let mut index = Vec::with_capacity(40 + layout.records.len() * RECORD_HEADER_LEN + tail.len());
    index.extend_from_slice(INDEX_MAGIC);
    index.extend_from_slice(&id.to_le_bytes());
    index.extend_from_slice(&(layout.records.len() as u32).to_le_bytes());
    index.extend_from_slice(&pack[layout.magic.clone()]);
    for r in &layout.records {
        index.extend_from_slice(&pack[r.start..r.start + RECORD_HEADER_LEN]);
    }
    index.extend_from_slice(&(tail.len() as u32).to_le_bytes());
    index.extend_from_slice(tail);
    let index = key.seal(objects::KIND_PACK_INDEX, &index, Compress::No);

    let bodies: usize = layout
        .records
        .iter()
        .map(|r| r.len() - RECORD_HEADER_LEN)
        .sum();
    let size = padme(INDEX_AT + index.len() + bodies);
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(index.len() as u32).to_le_bytes());
    out.extend_from_slice(&index);
    for r in &layout.records {
        out.extend_from_slice(&pack[r.start + RECORD_HEADER_LEN..r.end]);
    }
    let data_end = out.len();
    out.resize(size, 0);
    key.fill_padding(&index, &mut out[data_end..]);
    Ok(out)
}

/// The pack id and bytes an object holds: one of `encode`, or a whole pack
/// in an envelope (the first release's objects).
pub fn decode(key: &EnvelopeKey, object: &[u8]) -> Result<(i64, Vec<u8>), ReplicateError> {
    let mut pack = Vec::with_capacity(object.len());
    let id = decode_into(key, object, |part| pack.extend_from_slice(part))?;
    Ok((id, pack))
}

/// Whether `object` decodes to pack `id` whose bytes are `pack`, compared
/// in place: no copy of the pack is made.
pub fn decodes_to(
    key: &EnvelopeKey,
    object: &[u8],
    id: i64,
    pack: &[u8],
) -> Result<bool, ReplicateError> {
    let (mut at, mut same) = (0, true);
    let got = decode_into(key, object, |part| {
        same &= pack.get(at..at + part.len()) == Some(part);
        at += part.len();
    })?;
    Ok(same && got == id && at == pack.len())
}

/// Gives the bytes of the pack `object` holds to `part`, in order, and
/// returns the pack's id.
fn decode_into(
    key: &EnvelopeKey,
    object: &[u8],
    mut part: impl FnMut(&[u8]),
) -> Result<i64, ReplicateError> {
    let damaged = |what: &str| ReplicateError::Damaged(format!("a pack object: {what}"));
    let Some(rest) = object.strip_prefix(&MAGIC[..]) else {
        let payload = key.open(objects::KIND_PACK, object)?;
        let (id, bytes) = objects::decode_pack(&payload)?;
        part(bytes);
        return Ok(id);
    };
    let index_len = u32::from_le_bytes(
        rest.get(..4)
            .ok_or_else(|| damaged("cut short"))?
            .try_into()
            .unwrap(),
    ) as usize;
    let sealed = object
        .get(INDEX_AT..INDEX_AT + index_len)
        .ok_or_else(|| damaged("its index runs past its end"))?;
    let index = key.open(objects::KIND_PACK_INDEX, sealed)?;
    let mut r = Reader(
        index
            .strip_prefix(&INDEX_MAGIC[..])
            .ok_or_else(|| damaged("not a pack index"))?,
    );
    let id = i64::from_le_bytes(r.take(8)?.try_into().unwrap());
    let n = u32::from_le_bytes(r.take(4)?.try_into().unwrap()) as usize;
    let magic = r.take(8)?;
    let headers = r.take(n * RECORD_HEADER_LEN)?;
    let tail_len = u32::from_le_bytes(r.take(4)?.try_into().unwrap()) as usize;
    let tail = r.take(tail_len)?;

    let mut bodies = Reader(&object[INDEX_AT + index_len..]);
    part(magic);
    for header in headers.chunks_exact(RECORD_HEADER_LEN) {
        // `len` counts what follows it: the rest of the header and the body.
        let len = u32::from_le_bytes(header[..4].try_into().unwrap()) as usize;
        let body = (len + 4)
            .checked_sub(RECORD_HEADER_LEN)
            .ok_or_else(|| damaged("a record shorter than its header"))?;
        part(header);
        part(bodies.take(body)?);
    }
    part(tail);
    Ok(id)
}

/// Takes bytes off the front of a slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ReplicateError> {
        if self.0.len() < n {
            return Err(ReplicateError::Damaged(
                "a pack object: shorter than its index says".into(),
            ));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
}
