using System.Runtime.InteropServices;

namespace CsiNvme.Protocol.Tls;

/// <summary>
/// The few OpenSSL 3 calls the NVMe/TCP secure channel needs (libssl.so.3 and libcrypto.so.3, which Debian 12 and the
/// runtime image ship). .NET's SslStream has no TLS 1.3 external PSKs, which NVMe/TCP TLS is built on; OpenSSL has
/// them through SSL_CTX_set_psk_find_session_callback / SSL_CTX_set_psk_use_session_callback. Macros of ssl.h and bio.h
/// are spelled out as the ctrl calls they expand to.
/// </summary>
internal static unsafe partial class OpenSsl
{
    private const string Ssl = "libssl.so.3";
    private const string Crypto = "libcrypto.so.3";

    public const int Tls13Version = 0x0304;
    public const int SslErrorWantRead = 2;
    public const int SslErrorWantWrite = 3;
    public const int SslErrorSyscall = 5;
    public const int SslErrorZeroReturn = 6;
    public const ulong OpNoTicket = 1UL << 14;
    private const int CtrlSetMinProtoVersion = 123;
    private const int CtrlSetMaxProtoVersion = 124;
    private const int BioCtrlPending = 10;
    private const int BioCSetBufMemEofReturn = 130;

    [LibraryImport(Ssl)]
    public static partial nint TLS_server_method();

    [LibraryImport(Ssl)]
    public static partial nint TLS_client_method();

    [LibraryImport(Ssl)]
    public static partial nint SSL_CTX_new(nint method);

    [LibraryImport(Ssl)]
    public static partial void SSL_CTX_free(nint ctx);

    [LibraryImport(Ssl)]
    private static partial nint SSL_CTX_ctrl(nint ctx, int cmd, nint larg, nint parg);

    [LibraryImport(Ssl)]
    public static partial ulong SSL_CTX_set_options(nint ctx, ulong options);

    [LibraryImport(Ssl, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int SSL_CTX_set_ciphersuites(nint ctx, string suites);

    [LibraryImport(Ssl, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int SSL_set_ciphersuites(nint ssl, string suites);

    [LibraryImport(Ssl)]
    public static partial int SSL_CTX_set_num_tickets(nint ctx, nuint tickets);

    [LibraryImport(Ssl)]
    public static partial void SSL_CTX_set_psk_find_session_callback(nint ctx, delegate* unmanaged<nint, byte*, nuint, nint*, int> callback);

    [LibraryImport(Ssl)]
    public static partial void SSL_CTX_set_psk_use_session_callback(nint ctx, delegate* unmanaged<nint, nint, byte**, nuint*, nint*, int> callback);

    [LibraryImport(Ssl)]
    public static partial nint SSL_new(nint ctx);

    [LibraryImport(Ssl)]
    public static partial void SSL_free(nint ssl);

    [LibraryImport(Ssl)]
    public static partial void SSL_set_bio(nint ssl, nint readBio, nint writeBio);

    [LibraryImport(Ssl)]
    public static partial void SSL_set_accept_state(nint ssl);

    [LibraryImport(Ssl)]
    public static partial void SSL_set_connect_state(nint ssl);

    [LibraryImport(Ssl)]
    public static partial int SSL_do_handshake(nint ssl);

    [LibraryImport(Ssl)]
    public static partial int SSL_read(nint ssl, byte* buffer, int length);

    [LibraryImport(Ssl)]
    public static partial int SSL_write(nint ssl, byte* buffer, int length);

    [LibraryImport(Ssl)]
    public static partial int SSL_get_error(nint ssl, int result);

    [LibraryImport(Ssl)]
    public static partial int SSL_shutdown(nint ssl);

    [LibraryImport(Ssl)]
    public static partial int SSL_set_ex_data(nint ssl, int index, nint data);

    [LibraryImport(Ssl)]
    public static partial nint SSL_get_ex_data(nint ssl, int index);

    [LibraryImport(Ssl)]
    public static partial nint SSL_CIPHER_find(nint ssl, byte* code);

    [LibraryImport(Ssl)]
    public static partial nint SSL_get_current_cipher(nint ssl);

    [LibraryImport(Ssl)]
    public static partial nint SSL_CIPHER_get_name(nint cipher);

    [LibraryImport(Ssl)]
    public static partial nint SSL_SESSION_new();

    [LibraryImport(Ssl)]
    public static partial void SSL_SESSION_free(nint session);

    [LibraryImport(Ssl)]
    public static partial int SSL_SESSION_set1_master_key(nint session, byte* key, nuint length);

    [LibraryImport(Ssl)]
    public static partial int SSL_SESSION_set_cipher(nint session, nint cipher);

    [LibraryImport(Ssl)]
    public static partial int SSL_SESSION_set_protocol_version(nint session, int version);

    [LibraryImport(Crypto)]
    public static partial nint BIO_s_mem();

    [LibraryImport(Crypto)]
    public static partial nint BIO_new(nint method);

    [LibraryImport(Crypto)]
    public static partial void BIO_free(nint bio);

    [LibraryImport(Crypto)]
    public static partial int BIO_write(nint bio, byte* data, int length);

    [LibraryImport(Crypto)]
    public static partial int BIO_read(nint bio, byte* data, int length);

    [LibraryImport(Crypto)]
    private static partial nint BIO_ctrl(nint bio, int cmd, nint larg, nint parg);

    [LibraryImport(Crypto)]
    public static partial ulong ERR_get_error();

    [LibraryImport(Crypto)]
    public static partial void ERR_clear_error();

    [LibraryImport(Crypto)]
    private static partial void ERR_error_string_n(ulong error, byte* buffer, nuint length);

    public static bool SetTls13Only(nint ctx) =>
        SSL_CTX_ctrl(ctx, CtrlSetMinProtoVersion, Tls13Version, 0) == 1 && SSL_CTX_ctrl(ctx, CtrlSetMaxProtoVersion, Tls13Version, 0) == 1;

    public static int Pending(nint bio) => (int)BIO_ctrl(bio, BioCtrlPending, 0, 0);

    /// <summary>An empty memory BIO reports "retry" instead of end of file, so SSL_read asks for more data.</summary>
    public static nint NewMemoryBio()
    {
        var bio = BIO_new(BIO_s_mem());
        if (bio == 0)
        {
            throw new TlsException("OpenSSL could not create a memory BIO");
        }

        BIO_ctrl(bio, BioCSetBufMemEofReturn, -1, 0);
        return bio;
    }

    /// <summary>The first queued OpenSSL error as text (the queue is cleared), or the fallback when there is none.</summary>
    public static string LastError(string fallback)
    {
        var error = ERR_get_error();
        ERR_clear_error();
        if (error == 0)
        {
            return fallback;
        }

        var buffer = stackalloc byte[256];
        ERR_error_string_n(error, buffer, 256);
        return Marshal.PtrToStringUTF8((nint)buffer) ?? fallback;
    }

    public static string? CipherName(nint ssl)
    {
        var cipher = SSL_get_current_cipher(ssl);
        return cipher == 0 ? null : Marshal.PtrToStringUTF8(SSL_CIPHER_get_name(cipher));
    }

    /// <summary>
    /// A TLS 1.3 session carrying an external PSK for the cipher suite of <paramref name="hash"/>, as the PSK callbacks
    /// return it (OpenSSL takes ownership); 0 when OpenSSL refuses.
    /// </summary>
    public static nint NewPskSession(nint ssl, ReadOnlySpan<byte> key, TlsPskHash hash)
    {
        // TLS_AES_128_GCM_SHA256 = {0x13, 0x01}, TLS_AES_256_GCM_SHA384 = {0x13, 0x02} (RFC 8446, B.4).
        var code = stackalloc byte[2] { 0x13, hash == TlsPskHash.Sha384 ? (byte)0x02 : (byte)0x01 };
        var cipher = SSL_CIPHER_find(ssl, code);
        var session = SSL_SESSION_new();
        if (cipher == 0 || session == 0)
        {
            if (session != 0)
            {
                SSL_SESSION_free(session);
            }

            return 0;
        }

        fixed (byte* pointer = key)
        {
            if (SSL_SESSION_set1_master_key(session, pointer, (nuint)key.Length) != 1 ||
                SSL_SESSION_set_cipher(session, cipher) != 1 ||
                SSL_SESSION_set_protocol_version(session, Tls13Version) != 1)
            {
                SSL_SESSION_free(session);
                return 0;
            }
        }

        return session;
    }
}

/// <summary>A TLS failure: a handshake refused (wrong or unknown PSK), a record that does not decrypt, OpenSSL missing.</summary>
public sealed class TlsException(string message) : IOException(message);
