using System.Diagnostics;
using System.Net.Sockets;
using System.Reflection;

namespace CsiNvme.Target.Tests;

/// <summary>
/// The I/O path allocates nothing per command in steady state. The target runs on thread-pool threads, so the
/// whole process is measured with <see cref="GC.GetTotalAllocatedBytes(bool)"/>; the client here uses pre-built
/// PDUs and blocking span-based socket calls, so it adds nothing per command itself.
/// </summary>
[NonParallelizable]
public sealed class AllocationTests
{
    private const int Bs = TargetHarness.BlockSize;
    private const int IoSize = 4096;
    private const double AllowedBytesPerCommand = 8;

    private static void ReceiveExactly(Socket socket, Span<byte> buffer)
    {
        while (!buffer.IsEmpty)
        {
            var received = socket.Receive(buffer);
            if (received == 0)
            {
                throw new EndOfStreamException("the target closed the connection");
            }

            buffer = buffer[received..];
        }
    }

    private static void SendAll(Socket socket, ReadOnlySpan<byte> buffer)
    {
        while (!buffer.IsEmpty)
        {
            buffer = buffer[socket.Send(buffer)..];
        }
    }

    /// <summary>Process-wide allocated bytes per command while <paramref name="run"/> executes.</summary>
    private static double Measure(Action run, int commands, string what, out string sampled)
    {
        using var sampler = new AllocationSampler();
        sampler.Start();
        var before = GC.GetTotalAllocatedBytes(precise: true);
        run();
        var allocated = GC.GetTotalAllocatedBytes(precise: true) - before;
        sampler.Stop();
        sampled = sampler.Describe();
        var perCommand = allocated / (double)commands;
        TestContext.Out.WriteLine($"{what}: {allocated} bytes over {commands} commands = {perCommand:F2} bytes/command ({sampled})");
        return perCommand;
    }

    /// <summary>
    /// A Debug build of the target cannot pass: without optimization the compiler emits async state machines as classes,
    /// allocated on every call even when the call completes synchronously. The number is still printed.
    /// </summary>
    private static void AssertNearZero(double perCommand, string sampled)
    {
        if (typeof(NvmeTarget).Assembly.GetCustomAttribute<DebuggableAttribute>()?.IsJITOptimizerDisabled == true)
        {
            Assert.Ignore($"CsiNvme.Target is a Debug build ({perCommand:F2} bytes/command, {sampled}); measure with `dotnet test -c Release --filter FullyQualifiedName~AllocationTests`");
        }

        Assert.That(perCommand, Is.LessThan(AllowedBytesPerCommand), $"allocation ticks: {sampled}");
    }

    /// <summary>CQE status at PDU bytes 8 + 14; zero apart from the phase bit means success.</summary>
    private static bool Succeeded(ReadOnlySpan<byte> capsuleResp) =>
        capsuleResp[0] == (byte)PduType.CapsuleResp && (BinaryPrimitives.ReadUInt16LittleEndian(capsuleResp[22..]) & 0xFFFE) == 0;

    [Test]
    public async Task InCapsuleWritesAndReadsAllocateNothingPerCommand()
    {
        await using var harness = TargetHarness.Start();
        using var admin = harness.ConnectAdmin();
        using var io = harness.ConnectIo(admin, 1);
        var socket = io.Socket;

        var payload = new byte[IoSize];
        Random.Shared.NextBytes(payload);
        var write = io.BuildCapsule(TestHost.Command((byte)IoOpcode.Write, 0, 1, TestHost.InCapsule(IoSize), 0, 0, TestHost.BlockCountField(IoSize, Bs)), payload);
        var read = io.BuildCapsule(TestHost.Command((byte)IoOpcode.Read, 0, 1, TestHost.Transport(IoSize), 0, 0, TestHost.BlockCountField(IoSize, Bs)));
        var writeResponse = new byte[24];
        var readResponse = new byte[24 + IoSize + 24];
        var failures = 0;

        void Run(int iterations)
        {
            for (var i = 0; i < iterations; i++)
            {
                var lba = (uint)(i % 1024 * (IoSize / Bs));
                BinaryPrimitives.WriteUInt16LittleEndian(write.AsSpan(10), (ushort)(2 * i));
                BinaryPrimitives.WriteUInt32LittleEndian(write.AsSpan(48), lba);
                SendAll(socket, write);
                ReceiveExactly(socket, writeResponse);
                failures += Succeeded(writeResponse) ? 0 : 1;

                BinaryPrimitives.WriteUInt16LittleEndian(read.AsSpan(10), (ushort)(2 * i + 1));
                BinaryPrimitives.WriteUInt32LittleEndian(read.AsSpan(48), lba);
                SendAll(socket, read);
                ReceiveExactly(socket, readResponse);
                failures += readResponse[0] == (byte)PduType.C2HData && Succeeded(readResponse.AsSpan(24 + IoSize)) ? 0 : 1;
            }
        }

        // Warm up past tiered compilation (tier 1 is compiled in the background after a delay): before that, code
        // the optimizing JIT makes allocation-free (an array enumerator behind an interface, for one) still allocates.
        Run(20_000);
        Thread.Sleep(500);
        const int iterations = 20_000;
        var perCommand = Measure(() => Run(iterations), 2 * iterations, "in-capsule 4 KiB write + read", out var sampled);
        Assert.That(failures, Is.Zero, "every command succeeded");
        Assert.That(readResponse.AsSpan(24, IoSize).SequenceEqual(payload), Is.True, "reads return the written data");
        AssertNearZero(perCommand, sampled);
    }

    [Test]
    public async Task R2TWritesAllocateNothingPerCommand()
    {
        const int size = 64 * 1024;
        await using var harness = TargetHarness.Start();
        using var admin = harness.ConnectAdmin();
        using var io = harness.ConnectIo(admin, 1);
        var socket = io.Socket;

        var payload = new byte[size];
        Random.Shared.NextBytes(payload);
        var command = io.BuildCapsule(TestHost.Command((byte)IoOpcode.Write, 0, 1, TestHost.Transport(size), 0, 0, TestHost.BlockCountField(size, Bs)));
        var h2c = io.BuildH2CData(0, 0, 0, payload, last: true);
        var r2t = new byte[24];
        var response = new byte[24];
        var failures = 0;

        void Run(int iterations)
        {
            for (var i = 0; i < iterations; i++)
            {
                var cid = (ushort)i;
                BinaryPrimitives.WriteUInt16LittleEndian(command.AsSpan(10), cid);
                BinaryPrimitives.WriteUInt32LittleEndian(command.AsSpan(48), (uint)(i % 256 * (size / Bs)));
                SendAll(socket, command);
                ReceiveExactly(socket, r2t);
                failures += r2t[0] == (byte)PduType.R2T ? 0 : 1;
                BinaryPrimitives.WriteUInt16LittleEndian(h2c.AsSpan(8), cid);
                r2t.AsSpan(10, 2).CopyTo(h2c.AsSpan(10));
                SendAll(socket, h2c);
                ReceiveExactly(socket, response);
                failures += Succeeded(response) ? 0 : 1;
            }
        }

        // Warm up past tiered compilation, as above.
        Run(5_000);
        Thread.Sleep(500);
        const int iterations = 5_000;
        var perCommand = Measure(() => Run(iterations), iterations, "64 KiB write by R2T", out var sampled);
        Assert.That(failures, Is.Zero, "every command succeeded");
        AssertNearZero(perCommand, sampled);
    }
}
