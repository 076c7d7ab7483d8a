using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using CsiNvme.Protocol.Tcp;

namespace CsiNvme.Protocol.Tls;

/// <summary>
/// TLS 1.3 with an external PSK over one NVMe/TCP socket (NVMe/TCP transport 1.0, 3.6: the secure channel is set up
/// right after the TCP connection, before ICReq), in user space with OpenSSL and memory BIOs: the socket calls stay the
/// caller's (blocking on a connection thread, asynchronous on the thread pool), OpenSSL only turns ciphertext into
/// plaintext and back. Cipher suites TLS_AES_128_GCM_SHA256 and TLS_AES_256_GCM_SHA384, no session tickets (the Linux
/// host hands the socket to kernel TLS after the handshake, which takes no post-handshake messages). One receiver and
/// one sender at a time (the connection's loop and its send lock); OpenSSL calls are serialised by a lock of their own
/// because the two may run at once.
/// </summary>
public sealed class TlsChannel : IDisposable
{
    private const int ChunkSize = 64 * 1024;

    // A TLS 1.3 record adds a 5-byte header, a content type byte and a 16-byte tag to at most 16 KiB of data.
    private const int CiphertextRoom = ChunkSize + (ChunkSize / 16384 + 1) * 22 + 4096;

    private static readonly Lazy<nint> _serverContext = new(() => NewContext(server: true));
    private static readonly Lazy<nint> _clientContext = new(() => NewContext(server: false));

    private readonly object _gate = new();
    private readonly Socket _socket;
    private readonly Func<TlsPskIdentity, byte[]?>? _resolveKey;
    private readonly byte[] _clientIdentity = [];
    private readonly byte[] _clientKey = [];
    private readonly TlsPskHash _clientHash;
    private readonly byte[] _receiveCiphertext = GC.AllocateUninitializedArray<byte>(CiphertextRoom, pinned: true);
    private readonly byte[] _sendCiphertext = GC.AllocateUninitializedArray<byte>(CiphertextRoom, pinned: true);
    private nint _ssl;
    private nint _readBio;
    private nint _writeBio;
    private GCHandle _self;
    private nint _identityCopy;

    private TlsChannel(Socket socket, bool server, Func<TlsPskIdentity, byte[]?>? resolveKey, TlsPskIdentity clientIdentity, byte[]? clientKey)
    {
        _socket = socket;
        _resolveKey = resolveKey;
        var context = server ? _serverContext.Value : _clientContext.Value;
        _ssl = OpenSsl.SSL_new(context);
        if (_ssl == 0)
        {
            throw new TlsException(OpenSsl.LastError("OpenSSL could not create a TLS session"));
        }

        _readBio = OpenSsl.NewMemoryBio();
        _writeBio = OpenSsl.NewMemoryBio();
        OpenSsl.SSL_set_bio(_ssl, _readBio, _writeBio);
        _self = GCHandle.Alloc(this);
        OpenSsl.SSL_set_ex_data(_ssl, 0, GCHandle.ToIntPtr(_self));
        if (server)
        {
            OpenSsl.SSL_set_accept_state(_ssl);
        }
        else
        {
            _clientIdentity = Encoding.UTF8.GetBytes(clientIdentity.ToString());
            _clientKey = clientKey!;
            _clientHash = clientIdentity.Hash;

            // A TLS 1.3 PSK is used only with a cipher suite of its hash: offering the other one first would let the
            // target pick it and ignore the PSK.
            OpenSsl.SSL_set_ciphersuites(_ssl, _clientHash == TlsPskHash.Sha384 ? "TLS_AES_256_GCM_SHA384" : "TLS_AES_128_GCM_SHA256");
            OpenSsl.SSL_set_connect_state(_ssl);
        }
    }

    /// <summary>The identity the host presented and the target accepted (server side), once the handshake is done.</summary>
    public TlsPskIdentity? PeerIdentity { get; private set; }

    /// <summary>The negotiated cipher suite, once the handshake is done.</summary>
    public string? CipherSuite { get; private set; }

    /// <summary>
    /// The target's side: <paramref name="resolveKey"/> returns the TLS PSK for an identity a host presents, or null for an
    /// identity it does not know (the handshake then fails: there is no certificate to fall back to).
    /// </summary>
    public static TlsChannel ForServer(Socket socket, Func<TlsPskIdentity, byte[]?> resolveKey) => new(socket, true, resolveKey, default, null);

    /// <summary>The host's side, presenting <paramref name="identity"/> with the TLS PSK derived from <paramref name="psk"/>.</summary>
    public static TlsChannel ForClient(Socket socket, TlsPsk psk, TlsPskIdentity identity) =>
        new(socket, false, null, identity, psk.TlsKeyFor(identity) ?? throw new ArgumentException("the identity does not belong to the PSK", nameof(identity)));

    /// <summary>Whether the first byte of a connection starts a TLS handshake record (content type 22) rather than an ICReq (PDU type 0).</summary>
    public static bool StartsTlsRecord(byte firstByte) => firstByte == 0x16;

    /// <summary>Feeds bytes already read from the socket (the first bytes the target looked at) to the handshake.</summary>
    public unsafe void Feed(ReadOnlySpan<byte> ciphertext)
    {
        lock (_gate)
        {
            fixed (byte* pointer = ciphertext)
            {
                if (OpenSsl.BIO_write(_readBio, pointer, ciphertext.Length) != ciphertext.Length)
                {
                    throw new TlsException("OpenSSL did not take received TLS data");
                }
            }
        }
    }

    /// <summary>Runs the handshake with blocking socket calls; throws <see cref="TlsException"/> when it fails.</summary>
    public void Handshake()
    {
        while (true)
        {
            var done = Step(out var toSend);
            SendCiphertextBlocking(toSend);
            if (done)
            {
                return;
            }

            var received = _socket.Receive(_receiveCiphertext, SocketFlags.None);
            if (received == 0)
            {
                throw new TlsException("the peer closed the connection during the TLS handshake");
            }

            Feed(_receiveCiphertext.AsSpan(0, received));
        }
    }

    /// <summary>Runs the handshake with asynchronous socket calls.</summary>
    public async Task HandshakeAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            var done = Step(out var toSend);
            var offset = 0;
            while (offset < toSend)
            {
                offset += await _socket.SendAsync(_sendCiphertext.AsMemory(offset, toSend - offset), SocketFlags.None, cancellationToken).ConfigureAwait(false);
            }

            if (done)
            {
                return;
            }

            var received = await _socket.ReceiveAsync(_receiveCiphertext.AsMemory(), SocketFlags.None, cancellationToken).ConfigureAwait(false);
            if (received == 0)
            {
                throw new TlsException("the peer closed the connection during the TLS handshake");
            }

            Feed(_receiveCiphertext.AsSpan(0, received));
        }
    }

    /// <summary>
    /// Receives plaintext with blocking socket calls (polling first, as <see cref="SocketCalls.ReceivePolling"/> does); 0 at
    /// the end of the connection.
    /// </summary>
    public int Receive(Span<byte> buffer, SafeHandle handle, long pollTicks)
    {
        while (true)
        {
            var plain = Decrypt(buffer);
            if (plain != 0)
            {
                return Math.Max(plain, 0);
            }

            var received = SocketCalls.ReceivePolling(_socket, handle, _receiveCiphertext, pollTicks);
            if (received == 0)
            {
                return 0;
            }

            Feed(_receiveCiphertext.AsSpan(0, received));
        }
    }

    /// <summary>Receives plaintext with asynchronous socket calls; 0 at the end of the connection.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<int> ReceiveAsync(Memory<byte> buffer, CancellationToken cancellationToken)
    {
        while (true)
        {
            var plain = Decrypt(buffer.Span);
            if (plain != 0)
            {
                return Math.Max(plain, 0);
            }

            var received = await _socket.ReceiveAsync(_receiveCiphertext.AsMemory(), SocketFlags.None, cancellationToken).ConfigureAwait(false);
            if (received == 0)
            {
                return 0;
            }

            Feed(_receiveCiphertext.AsSpan(0, received));
        }
    }

    /// <summary>Encrypts and sends all of <paramref name="data"/> with blocking socket calls.</summary>
    public void Send(ReadOnlySpan<byte> data)
    {
        while (!data.IsEmpty)
        {
            var chunk = Math.Min(data.Length, ChunkSize);
            SendCiphertextBlocking(Encrypt(data[..chunk]));
            data = data[chunk..];
        }
    }

    /// <summary>Encrypts and sends all of <paramref name="data"/> with asynchronous socket calls.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask SendAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        while (!data.IsEmpty)
        {
            var chunk = Math.Min(data.Length, ChunkSize);
            var length = Encrypt(data.Span[..chunk]);
            var offset = 0;
            while (offset < length)
            {
                offset += await _socket.SendAsync(_sendCiphertext.AsMemory(offset, length - offset), SocketFlags.None, cancellationToken).ConfigureAwait(false);
            }

            data = data[chunk..];
        }
    }

    public unsafe void Dispose()
    {
        lock (_gate)
        {
            if (_ssl != 0)
            {
                // SSL_free frees both BIOs set with SSL_set_bio.
                OpenSsl.SSL_free(_ssl);
                _ssl = _readBio = _writeBio = 0;
            }

            if (_self.IsAllocated)
            {
                _self.Free();
            }

            if (_identityCopy != 0)
            {
                Marshal.FreeHGlobal(_identityCopy);
                _identityCopy = 0;
            }

            CryptographicOperations.ZeroMemory(_clientKey);
        }
    }

    private void SendCiphertextBlocking(int length)
    {
        var offset = 0;
        while (offset < length)
        {
            offset += _socket.Send(_sendCiphertext.AsSpan(offset, length - offset), SocketFlags.None);
        }
    }

    /// <summary>One handshake step: true when done; <paramref name="toSend"/> ciphertext bytes wait in the send buffer.</summary>
    private unsafe bool Step(out int toSend)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_ssl == 0, this);
            OpenSsl.ERR_clear_error();
            var result = OpenSsl.SSL_do_handshake(_ssl);
            toSend = DrainLocked(0);
            if (result == 1)
            {
                CipherSuite = OpenSsl.CipherName(_ssl);
                return true;
            }

            var error = OpenSsl.SSL_get_error(_ssl, result);
            if (error == OpenSsl.SslErrorWantRead)
            {
                return false;
            }

            // The alert OpenSSL queued (decrypt_error for a wrong key, handshake_failure for an unknown identity) goes out
            // before the connection is closed, so the peer learns why.
            SendCiphertextBlocking(toSend);
            toSend = 0;
            throw new TlsException($"TLS handshake failed: {OpenSsl.LastError(PeerIdentity is null && _resolveKey is not null ? "no PSK for the identity the host presented" : "handshake refused")}");
        }
    }

    /// <summary>Plaintext bytes read into <paramref name="buffer"/>; 0 when more ciphertext is needed; -1 at close_notify.</summary>
    private unsafe int Decrypt(Span<byte> buffer)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_ssl == 0, this);
            fixed (byte* pointer = buffer)
            {
                var result = OpenSsl.SSL_read(_ssl, pointer, buffer.Length);
                if (result > 0)
                {
                    return result;
                }

                var error = OpenSsl.SSL_get_error(_ssl, result);
                return error switch
                {
                    OpenSsl.SslErrorWantRead => 0,
                    OpenSsl.SslErrorZeroReturn => -1,
                    _ => throw new TlsException($"TLS receive failed: {OpenSsl.LastError("bad record")}"),
                };
            }
        }
    }

    /// <summary>Encrypts one chunk into the send buffer, after whatever OpenSSL queued before (a KeyUpdate answer); returns its length.</summary>
    private unsafe int Encrypt(ReadOnlySpan<byte> plaintext)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_ssl == 0, this);
            var length = DrainLocked(0);
            fixed (byte* pointer = plaintext)
            {
                if (OpenSsl.SSL_write(_ssl, pointer, plaintext.Length) != plaintext.Length)
                {
                    throw new TlsException($"TLS send failed: {OpenSsl.LastError("write refused")}");
                }
            }

            return DrainLocked(length);
        }
    }

    private unsafe int DrainLocked(int offset)
    {
        while (true)
        {
            var pending = OpenSsl.Pending(_writeBio);
            if (pending <= 0)
            {
                return offset;
            }

            if (offset + pending > _sendCiphertext.Length)
            {
                throw new TlsException("TLS output larger than the send buffer");
            }

            fixed (byte* pointer = &_sendCiphertext[offset])
            {
                var read = OpenSsl.BIO_read(_writeBio, pointer, pending);
                if (read <= 0)
                {
                    return offset;
                }

                offset += read;
            }
        }
    }

    private unsafe static nint NewContext(bool server)
    {
        nint context;
        try
        {
            context = OpenSsl.SSL_CTX_new(server ? OpenSsl.TLS_server_method() : OpenSsl.TLS_client_method());
        }
        catch (DllNotFoundException ex)
        {
            throw new TlsException($"NVMe/TCP TLS needs OpenSSL 3 (libssl.so.3): {ex.Message}");
        }

        if (context == 0 || !OpenSsl.SetTls13Only(context) ||
            OpenSsl.SSL_CTX_set_ciphersuites(context, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384") != 1)
        {
            throw new TlsException(OpenSsl.LastError("OpenSSL refused the TLS 1.3 PSK settings"));
        }

        OpenSsl.SSL_CTX_set_options(context, OpenSsl.OpNoTicket);
        OpenSsl.SSL_CTX_set_num_tickets(context, 0);
        if (server)
        {
            OpenSsl.SSL_CTX_set_psk_find_session_callback(context, &FindSession);
        }
        else
        {
            OpenSsl.SSL_CTX_set_psk_use_session_callback(context, &UseSession);
        }

        return context;
    }

    private static TlsChannel? Owner(nint ssl)
    {
        var pointer = OpenSsl.SSL_get_ex_data(ssl, 0);
        return pointer == 0 ? null : GCHandle.FromIntPtr(pointer).Target as TlsChannel;
    }

    /// <summary>
    /// OpenSSL's server callback for the identity a host presents: a session with the derived TLS PSK, or none (the
    /// handshake then fails). Exceptions must not cross into OpenSSL.
    /// </summary>
    [UnmanagedCallersOnly]
    private unsafe static int FindSession(nint ssl, byte* identity, nuint identityLength, nint* session)
    {
        *session = 0;
        try
        {
            var owner = Owner(ssl);
            var text = Encoding.UTF8.GetString(identity, (int)identityLength);
            if (owner?._resolveKey is null || !TlsPskIdentity.TryParse(text, out var parsed))
            {
                return 1;
            }

            var key = owner._resolveKey(parsed);
            if (key is null)
            {
                return 1;
            }

            *session = OpenSsl.NewPskSession(ssl, key, parsed.Hash);
            CryptographicOperations.ZeroMemory(key);
            if (*session != 0)
            {
                owner.PeerIdentity = parsed;
            }

            return 1;
        }
        catch
        {
            return 0;
        }
    }

    /// <summary>OpenSSL's client callback: the identity and session to offer.</summary>
    [UnmanagedCallersOnly]
    private unsafe static int UseSession(nint ssl, nint digest, byte** identity, nuint* identityLength, nint* session)
    {
        *session = 0;
        try
        {
            var owner = Owner(ssl);
            if (owner is null)
            {
                return 0;
            }

            // The identity must outlive the callback: a native copy, freed with the channel.
            if (owner._identityCopy == 0)
            {
                owner._identityCopy = Marshal.AllocHGlobal(owner._clientIdentity.Length);
                owner._clientIdentity.CopyTo(new Span<byte>((void*)owner._identityCopy, owner._clientIdentity.Length));
            }

            *identity = (byte*)owner._identityCopy;
            *identityLength = (nuint)owner._clientIdentity.Length;
            *session = OpenSsl.NewPskSession(ssl, owner._clientKey, owner._clientHash);
            return *session == 0 ? 0 : 1;
        }
        catch
        {
            return 0;
        }
    }
}
