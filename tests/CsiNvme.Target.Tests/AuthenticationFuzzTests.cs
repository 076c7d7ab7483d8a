using System.Diagnostics;
using System.Net.Sockets;
using CsCheck;
using CsiNvme.Protocol.Authentication;
using CsiNvme.Target.Subsystems;

namespace CsiNvme.Target.Tests;

/// <summary>
/// A bounded fuzz run of DH-HMAC-CHAP on a real listener: at each point of a transaction (instead of AUTH_Negotiate,
/// the DH-HMAC-CHAP_Reply, Success2, or a re-authentication after success), on admin and I/O queues, the host's
/// message is replaced by a mutated, truncated, extended or random one, an Authentication Send whose declared length
/// disagrees with its data, a command with random security protocol fields, or an out-of-order Authentication Receive.
/// Each connection gets an answer or is ended, nothing is logged as an unexpected failure, an authenticated queue
/// opened before keeps its data, and afterwards a well-behaved host authenticates and does I/O.
/// </summary>
public sealed class AuthenticationFuzzTests
{
    private const int Bs = TargetHarness.BlockSize;

    /// <summary>Iterations of the run: 600 took 7 s on a loaded 2-core machine, so this stays well inside a minute.</summary>
    private const int Iterations = 1500;

    private static readonly DhchapSecret HostSecret = DhchapSecret.Generate(DhchapHash.Sha256);
    private static readonly DhchapSecret ControllerSecret = DhchapSecret.Generate(DhchapHash.Sha256);

    private enum Point
    {
        Negotiate,
        Reply,
        Success2,
        Reauthentication,
    }

    private enum Mutation
    {
        FlipBytes,
        Resize,
        Random,
        LengthMismatch,
        SecurityFields,
        ReceiveInstead,
    }

    private sealed record Attack(Point Point, bool IoQueue, Mutation Mutation, byte[] Noise, int Size, uint Declared);

    private static readonly Gen<Attack> Attacks =
        Gen.Select(Gen.Enum<Point>(), Gen.Bool, Gen.Enum<Mutation>(), Gen.Byte.Array[1, 700], Gen.Int[0, 1100],
            Gen.OneOf(Gen.UInt[0, 9000], Gen.UInt),
            (point, io, mutation, noise, size, declared) => new Attack(point, io, mutation, noise, size, declared));

    [Test]
    public async Task MutatedAuthenticationMessagesNeverHurtTheTarget()
    {
        await using var harness = TargetHarness.Start();
        // Null group: the run spends its time on the message handling, not on modular exponentiation.
        harness.Subsystem.SetHostCredentials(harness.Host.Nqn,
            DhchapCredentials.Create(HostSecret, ControllerSecret, DhchapHash.Sha256, DhchapDhGroup.Null));
        using var healthyAdmin = AuthenticationTests.ConnectAuthenticated(harness, harness.Host, HostSecret, ControllerSecret);
        using var healthy = ConnectIoAuthenticated(harness, healthyAdmin, 1);
        var data = new byte[16384];
        Random.Shared.NextBytes(data);
        Assert.That(healthy.WriteInCapsule(1, 0, data, Bs).Status, Is.EqualTo(NvmeStatus.Success));

        var started = Stopwatch.StartNew();
        Attacks.Sample(attack =>
        {
            // A failed authentication ends the whole controller (the target answers AUTH_Failure1 and tears it down), so an attacked I/O queue gets an
            // authenticated controller of its own, never the healthy one's.
            using var owner = attack.IoQueue ? AuthenticationTests.ConnectAuthenticated(harness, harness.Host, HostSecret, ControllerSecret) : null;
            using var host = harness.Initialize();
            var connect = owner is not null
                ? host.ConnectIo(1, owner.ControllerId, TargetHarness.SubsystemNqn, harness.Host.Nqn, harness.Host.Id)
                : host.ConnectAdmin(TargetHarness.SubsystemNqn, harness.Host.Nqn, harness.Host.Id);
            Assert.That(connect.Status, Is.EqualTo(NvmeStatus.Success));
            Run(host, attack, harness.Host.Nqn);
        }, iter: Iterations, threads: 2, print: a => $"{a.Point} io={a.IoQueue} {a.Mutation} size={a.Size} declared={a.Declared} {Convert.ToHexString(a.Noise)}");
        TestContext.Out.WriteLine($"{Iterations} attacks in {started.Elapsed.TotalSeconds:F1} s");

        Assert.That(healthy.Read(1, 0, data.Length, Bs).Data, Is.EqualTo(data), "an authenticated queue opened before keeps working");
        Assert.That(healthyAdmin.KeepAlive().Status, Is.EqualTo(NvmeStatus.Success));
        Assert.That(harness.Logs.Errors, Is.Empty, "no connection failed with an unexpected exception");

        using var lateAdmin = AuthenticationTests.ConnectAuthenticated(harness, harness.Host, HostSecret, ControllerSecret);
        using var late = ConnectIoAuthenticated(harness, lateAdmin, 1);
        Assert.That(late.Read(1, 0, data.Length, Bs).Data, Is.EqualTo(data), "a well-behaved host still authenticates and reads");
    }

    private static TestHost ConnectIoAuthenticated(TargetHarness harness, TestHost admin, ushort queueId)
    {
        var io = harness.Initialize();
        Assert.That(io.ConnectIo(queueId, admin.ControllerId, TargetHarness.SubsystemNqn, harness.Host.Nqn, harness.Host.Id).Status, Is.EqualTo(NvmeStatus.Success));
        Assert.That(AuthenticationTests.Authenticate(io, harness.Host.Nqn, TargetHarness.SubsystemNqn, HostSecret, ControllerSecret).Error, Is.Null);
        return io;
    }

    /// <summary>Runs the transaction correctly up to the attack's point, then sends the attack and waits for an answer or the end.</summary>
    private static void Run(TestHost host, Attack attack, string hostNqn)
    {
        try
        {
            var transaction = new DhchapHostTransaction(hostNqn, TargetHarness.SubsystemNqn, 7, HostSecret, ControllerSecret);
            var message = transaction.Negotiate();
            if (attack.Point != Point.Negotiate)
            {
                AuthenticationTests.Send(host, message);
                if (!transaction.TryAnswerChallenge(AuthenticationTests.Receive(host).Data, out var reply) || reply is null)
                {
                    Assert.Fail($"the challenge was refused: {transaction.Error}");
                }

                message = reply!;
                if (attack.Point != Point.Reply)
                {
                    AuthenticationTests.Send(host, message);
                    var done = transaction.TryCompleteSuccess1(AuthenticationTests.Receive(host).Data, out var last);
                    Assert.That(done && last is not null, Is.True, $"Success1: {transaction.Error}");
                    message = last!;
                    if (attack.Point == Point.Reauthentication)
                    {
                        AuthenticationTests.Send(host, message);
                        message = new DhchapHostTransaction(hostNqn, TargetHarness.SubsystemNqn, 8, HostSecret, ControllerSecret).Negotiate();
                    }
                }
            }

            SendAttack(host, attack, message);
            AwaitAnswerOrClose(host);
        }
        catch (Exception e) when (e is EndOfStreamException || e is SocketException { SocketErrorCode: SocketError.ConnectionReset or SocketError.ConnectionAborted or SocketError.Shutdown })
        {
            // The target ended the connection: an accepted answer to a bad message.
        }
    }

    private static void SendAttack(TestHost host, Attack attack, byte[] message)
    {
        switch (attack.Mutation)
        {
            case Mutation.FlipBytes:
                {
                    var mutated = (byte[])message.Clone();
                    for (var i = 0; i + 1 < attack.Noise.Length && i < 16; i += 2)
                    {
                        mutated[attack.Noise[i] % mutated.Length] ^= (byte)(attack.Noise[i + 1] | 1);
                    }

                    SendMessage(host, mutated);
                    break;
                }

            case Mutation.Resize:
                {
                    var size = attack.Size % (message.Length + 64);
                    var resized = new byte[size];
                    message.AsSpan(0, Math.Min(size, message.Length)).CopyTo(resized);
                    for (var i = message.Length; i < size; i++)
                    {
                        resized[i] = attack.Noise[i % attack.Noise.Length];
                    }

                    SendMessage(host, resized);
                    break;
                }

            case Mutation.Random:
                {
                    // A plausible start (the DH-HMAC-CHAP auth type and a message id) makes random bodies reach the parsers.
                    var random = (byte[])attack.Noise.Clone();
                    random[0] = (attack.Size & 1) == 0 ? (byte)0x01 : random[0];
                    if (random.Length > 1)
                    {
                        random[1] = (byte)(0x80 + attack.Size % 0x12);
                    }

                    SendMessage(host, random);
                    break;
                }

            case Mutation.LengthMismatch:
                {
                    var sqe = AuthenticationCommand.Dhchap(attack.Declared)
                        .ToSubmissionQueueEntry(host.NextCommandId(), send: true, TestHost.InCapsule(message.Length));
                    host.SendCapsule(sqe, message);
                    break;
                }

            case Mutation.SecurityFields:
                {
                    var command = new AuthenticationCommand(attack.Noise[0], (byte)attack.Size, (byte)(attack.Size >> 8), (uint)message.Length);
                    host.SendCapsule(command.ToSubmissionQueueEntry(host.NextCommandId(), send: (attack.Declared & 1) == 0, TestHost.InCapsule(message.Length)), message);
                    break;
                }

            case Mutation.ReceiveInstead:
                {
                    var sqe = AuthenticationCommand.Dhchap(attack.Declared % 70000)
                        .ToSubmissionQueueEntry(host.NextCommandId(), send: false, TestHost.Transport((int)(attack.Declared % 70000)));
                    host.SendCapsule(sqe);
                    break;
                }
        }
    }

    private static void SendMessage(TestHost host, byte[] message) =>
        host.SendCapsule(AuthenticationCommand.Dhchap((uint)message.Length)
            .ToSubmissionQueueEntry(host.NextCommandId(), send: true, TestHost.InCapsule(message.Length)), message);

    /// <summary>The target answers the command (any PDU, well formed) or ends the connection; silence fails the test.</summary>
    private static void AwaitAnswerOrClose(TestHost host)
    {
        try
        {
            host.ReceivePdu();
        }
        catch (SocketException e) when (e.SocketErrorCode is SocketError.TimedOut or SocketError.WouldBlock)
        {
            Assert.Fail("the target neither answered nor ended the connection");
        }
    }
}
