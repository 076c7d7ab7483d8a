using CsCheck;
using CsiNvme.Protocol.Commands;
using CsiNvme.Protocol.Fabrics;
using CsiNvme.Protocol.Identify;
using CsiNvme.Protocol.Logs;
using CsiNvme.Protocol.Tcp;

namespace CsiNvme.Protocol.Tests;

/// <summary>Every structure with both Read and Write decodes what it encodes, for any field values.</summary>
public sealed class RoundTripPropertyTests
{
    private static readonly Gen<byte[]> Sixteen = Gen.Byte.Array[16];
    private static readonly Gen<byte[]> Eight = Gen.Byte.Array[8];

    /// <summary>Printable ASCII, as NQNs and identify strings are.</summary>
    private static Gen<string> Ascii(int min, int max) => Gen.Char[' ', '~'].Array[min, max].Select(c => new string(c));

    /// <summary>Space-padded fields cannot carry trailing spaces: the padding is indistinguishable from them.</summary>
    private static Gen<string> Padded(int max) => Ascii(0, max).Select(s => s.TrimEnd(' '));

    private static readonly Gen<SglDescriptor> Sgl =
        Gen.Select(Gen.ULong, Gen.UInt, Gen.Byte, (a, l, t) => new SglDescriptor(a, l, t));

    private static readonly Gen<SubmissionQueueEntry> Sqe =
        Gen.Select(Gen.Byte, Gen.Byte, Gen.UShort, Gen.UInt, Sgl, Gen.UInt.Array[9], Gen.ULong,
            (op, flags, cid, nsid, dptr, dw, mptr) =>
                new SubmissionQueueEntry(op, flags, cid, nsid, dptr, dw[0], dw[1], dw[2], dw[3], dw[4], dw[5], dw[6], dw[7], mptr));

    private static readonly Gen<NvmeStatus> Status =
        Gen.Select(Gen.Enum<StatusCodeType>(), Gen.Byte, Gen.Bool, (t, c, d) => new NvmeStatus(t, c, d));

    [Test]
    public void PduHeaderRoundTrips() =>
        Gen.Select(Gen.Enum<PduType>(), Gen.Byte, Gen.Byte, Gen.Byte, Gen.UInt,
                (t, f, h, p, l) => new PduHeader(t, (PduFlags)f, h, p, l))
            .Sample(header =>
            {
                var wire = new byte[PduHeader.Size];
                header.Write(wire);
                Assert.That(PduHeader.Read(wire), Is.EqualTo(header));
            });

    [Test]
    public void ICReqRoundTrips() =>
        Gen.Select(Gen.UShort, Gen.Byte, Gen.Bool, Gen.Bool, Gen.UInt, (v, a, h, d, m) => new ICReq(v, a, h, d, m))
            .Sample(icreq =>
            {
                var wire = new byte[ICReq.Length];
                icreq.Write(wire);
                Assert.That(ICReq.Read(wire), Is.EqualTo(icreq));
                Assert.That(PduHeader.Read(wire), Is.EqualTo(new PduHeader(PduType.ICReq, PduFlags.None, 128, 0, 128)));
            });

    [Test]
    public void ICRespRoundTrips() =>
        Gen.Select(Gen.UShort, Gen.Byte, Gen.Bool, Gen.Bool, Gen.UInt, (v, a, h, d, m) => new ICResp(v, a, h, d, m))
            .Sample(icresp =>
            {
                var wire = new byte[ICResp.Length];
                icresp.Write(wire);
                Assert.That(ICResp.Read(wire), Is.EqualTo(icresp));
                Assert.That(PduHeader.Read(wire), Is.EqualTo(new PduHeader(PduType.ICResp, PduFlags.None, 128, 0, 128)));
            });

    [Test]
    public void DataTransferHeaderRoundTrips() =>
        Gen.Select(
                Gen.Select(Gen.UShort, Gen.UShort, Gen.UInt, Gen.UInt, (c, t, o, l) => new DataTransferHeader(c, t, o, l)),
                Gen.OneOf(PduType.H2CData, PduType.C2HData, PduType.R2T),
                Gen.Byte, Gen.Byte, Gen.UInt)
            .Sample((header, type, flags, pdo, plen) =>
            {
                var wire = new byte[24];
                header.Write(wire, type, (PduFlags)flags, pdo, plen);
                Assert.That(DataTransferHeader.Read(wire), Is.EqualTo(header));
                Assert.That(PduHeader.Read(wire), Is.EqualTo(new PduHeader(type, (PduFlags)flags, 24, pdo, plen)));
            });

    [Test]
    public void TermReqRoundTrips() =>
        Gen.Select(Gen.Enum<TermReqFatalError>(), Gen.UInt, Gen.Byte.Array[0, 200], Gen.Bool)
            .Sample((fes, fei, offending, toHost) =>
            {
                var wire = new byte[24 + 128];
                var type = toHost ? PduType.C2HTermReq : PduType.H2CTermReq;
                var length = new TermReq(fes, fei).Write(wire, type, offending);
                var copied = Math.Min(offending.Length, 128);

                Assert.That(length, Is.EqualTo(24 + copied));
                Assert.That(TermReq.Read(wire), Is.EqualTo(new TermReq(fes, fei)));
                Assert.That(PduHeader.Read(wire), Is.EqualTo(new PduHeader(type, PduFlags.None, 24, 0, (uint)length)));
                Assert.That(wire.AsSpan(24, copied).SequenceEqual(offending.AsSpan(0, copied)), Is.True);
            });

    [Test]
    public void SglDescriptorRoundTrips() =>
        Sgl.Sample(sgl =>
        {
            var wire = new byte[SglDescriptor.Size];
            sgl.Write(wire);
            Assert.That(SglDescriptor.Read(wire), Is.EqualTo(sgl));
        });

    [Test]
    public void SubmissionQueueEntryRoundTrips() =>
        Sqe.Sample(sqe =>
        {
            var wire = new byte[SubmissionQueueEntry.Size];
            sqe.Write(wire);
            var read = SubmissionQueueEntry.Read(wire);

            Assert.That(
                (read.Opcode, read.Flags, read.CommandId, read.NamespaceId, read.DataPointer, read.Cdw2, read.Cdw3, read.MetadataPointer),
                Is.EqualTo((sqe.Opcode, sqe.Flags, sqe.CommandId, sqe.NamespaceId, sqe.DataPointer, sqe.Cdw2, sqe.Cdw3, sqe.MetadataPointer)));
            Assert.That(
                new[] { read.Cdw10, read.Cdw11, read.Cdw12, read.Cdw13, read.Cdw14, read.Cdw15 },
                Is.EqualTo(new[] { sqe.Cdw10, sqe.Cdw11, sqe.Cdw12, sqe.Cdw13, sqe.Cdw14, sqe.Cdw15 }));

            var again = new byte[SubmissionQueueEntry.Size];
            read.Write(again);
            Assert.That(again, Is.EqualTo(wire));
        });

    [Test]
    public void NvmHelpersFollowCdw10To12() =>
        Gen.Select(Gen.ULong, Gen.UShort, Gen.Bool, Gen.UInt)
            .Sample((slba, nlb, fua, noise) =>
            {
                // Bits other than NLB (15:0) and FUA (30) may carry PRINFO, DTYPE and LR; they must not leak in.
                var cdw12 = nlb | (fua ? 1u << 30 : 0) | (noise & 0xBFFF_0000);
                var sqe = new SubmissionQueueEntry(0x01, 0x40, 1, 1, default, (uint)slba, (uint)(slba >> 32), cdw12, 0, 0, 0);
                Assert.That(sqe.StartingLba, Is.EqualTo(slba));
                Assert.That(sqe.BlockCount, Is.EqualTo(nlb + 1u));
                Assert.That(sqe.ForceUnitAccess, Is.EqualTo(fua));
            });

    [Test]
    public void CompletionQueueEntryRoundTrips() =>
        Gen.Select(Gen.UInt, Gen.UInt, Gen.UShort, Gen.UShort, Gen.UShort, Status,
                (dw0, dw1, head, sqid, cid, status) => new CompletionQueueEntry(dw0, dw1, head, sqid, cid, status))
            .Sample(cqe =>
            {
                var wire = new byte[CompletionQueueEntry.Size];
                cqe.Write(wire);
                Assert.That(CompletionQueueEntry.Read(wire), Is.EqualTo(cqe));
            });

    [Test]
    public void StatusFieldRoundTrips() =>
        Status.Sample(status =>
        {
            var field = status.ToStatusField();
            Assert.That(NvmeStatus.FromStatusField(field), Is.EqualTo(status));
            Assert.That(NvmeStatus.FromStatusField((ushort)(field | 0x7001)), Is.EqualTo(status), "phase, CRD and M are not part of the status");
            Assert.That((field >> 1) & 0xFF, Is.EqualTo(status.Code));
            Assert.That((field >> 9) & 0x7, Is.EqualTo((int)status.Type));
            Assert.That((field & 0x8000) != 0, Is.EqualTo(status.DoNotRetry));
        });

    [Test]
    public void ConnectCommandRoundTrips() =>
        Gen.Select(Gen.UShort, Gen.UShort, Gen.UShort, Gen.Byte, Gen.UInt, Gen.UShort,
                (f, q, s, a, k, cid) => (Command: new ConnectCommand(f, q, s, a, k), Cid: cid))
            .Sample(x =>
            {
                var wire = new byte[64];
                x.Command.ToSubmissionQueueEntry(x.Cid, new SglDescriptor(0, 1024, SglDescriptor.InCapsuleDataBlock)).Write(wire);
                var sqe = SubmissionQueueEntry.Read(wire);
                Assert.That(ConnectCommand.From(sqe), Is.EqualTo(x.Command));
                Assert.That(sqe.CommandId, Is.EqualTo(x.Cid));
                Assert.That(sqe.FabricsCommandType, Is.EqualTo((byte)FabricsCommandType.Connect));
            });

    [Test]
    public void ConnectDataRoundTrips() =>
        Gen.Select(Sixteen, Gen.UShort, Ascii(0, 223), Ascii(0, 223),
                (id, cntlid, sub, host) => new ConnectData(new Guid(id), cntlid, sub, host))
            .Sample(data =>
            {
                var wire = new byte[ConnectData.Size];
                data.Write(wire);
                Assert.That(ConnectData.Read(wire), Is.EqualTo(data));
            });

    private static readonly Gen<IdentifyController> Controller =
        Gen.Select(
            Gen.Select(Gen.UShort, Padded(20), Padded(40), Padded(8), Gen.Byte, Gen.UInt[0, 0xFF_FFFF], Gen.Byte, Gen.Byte),
            Gen.Select(Gen.UShort, Gen.UInt, Gen.UInt, Gen.UInt, Gen.Enum<ControllerType>(), Gen.Byte.Array[5], Gen.UShort, Gen.UShort),
            Gen.Select(Gen.UShort, Gen.Byte, Gen.Byte, Gen.UInt, Gen.UInt, Gen.Byte, Gen.Byte, Gen.UShort),
            Gen.Select(Gen.UInt, Gen.UShort, Gen.UShort, Gen.Byte, Gen.Byte, Gen.UShort, Gen.UShort, Gen.UInt),
            Gen.Select(Gen.UInt, Ascii(0, 223), Gen.UInt, Gen.UInt, Gen.UShort, Gen.Byte, Gen.Byte, Gen.UShort),
            Gen.UShort,
            (a, b, c, d, e, power) => new IdentifyController
            {
                VendorId = a.Item1,
                SerialNumber = a.Item2,
                ModelNumber = a.Item3,
                FirmwareRevision = a.Item4,
                RecommendedArbitrationBurst = a.Item5,
                IeeeOui = a.Item6,
                MultiPathCapabilities = a.Item7,
                MaxDataTransferSizeExponent = a.Item8,
                ControllerId = b.Item1,
                Version = b.Item2,
                OptionalAsyncEvents = b.Item3,
                ControllerAttributes = b.Item4,
                ControllerType = b.Item5,
                AbortCommandLimit = b.Item6[0],
                AsyncEventRequestLimit = b.Item6[1],
                FirmwareUpdates = b.Item6[2],
                LogPageAttributes = b.Item6[3],
                ErrorLogPageEntries = b.Item6[4],
                WarningTemperature = b.Item7,
                CriticalTemperature = b.Item8,
                KeepAliveSupport = c.Item1,
                AnaTransitionTime = c.Item2,
                AnaCapabilities = c.Item3,
                AnaGroupIdMax = c.Item4,
                AnaGroupCount = c.Item5,
                SubmissionQueueEntrySize = c.Item6,
                CompletionQueueEntrySize = c.Item7,
                MaxOutstandingCommands = c.Item8,
                NamespaceCount = d.Item1,
                OptionalNvmCommands = d.Item2,
                FusedOperations = d.Item3,
                FormatNvmAttributes = d.Item4,
                VolatileWriteCache = d.Item5,
                AtomicWriteUnitNormal = d.Item6,
                AtomicWriteUnitPowerFail = d.Item7,
                SglSupport = d.Item8,
                MaxAllowedNamespaces = e.Item1,
                SubsystemNqn = e.Item2,
                IoQueueCommandCapsuleSize = e.Item3,
                IoQueueResponseCapsuleSize = e.Item4,
                InCapsuleDataOffset = e.Item5,
                FabricsControllerAttributes = e.Item6,
                MaxSglDataBlockDescriptors = e.Item7,
                OptionalFabricsCommands = e.Item8,
                PowerState0MaxPower = power,
            });

    [Test]
    public void IdentifyControllerRoundTrips() =>
        Controller.Sample(controller =>
        {
            var page = new byte[IdentifyController.Size];
            controller.Write(page);
            Assert.That(IdentifyController.Read(page), Is.EqualTo(controller));
        }, iter: 2000);

    [Test]
    public void IdentifyNamespaceRoundTrips() =>
        Gen.Select(
                Gen.Select(Gen.ULong, Gen.ULong, Gen.ULong, Gen.Byte, Gen.Byte, Gen.Byte, Gen.Byte, Gen.Byte),
                Gen.Select(Gen.UShort, Gen.UShort, Gen.UShort, Gen.UInt, Gen.Byte, Sixteen, Eight, Gen.Byte),
                (a, b) => new IdentifyNamespace
                {
                    SizeBlocks = a.Item1,
                    CapacityBlocks = a.Item2,
                    UtilizationBlocks = a.Item3,
                    Features = a.Item4,
                    FormattedLbaSize = a.Item5,
                    MultiPathCapabilities = a.Item6,
                    ReservationCapabilities = a.Item7,
                    DeallocateFeatures = a.Item8,
                    AtomicWriteUnitNormal = b.Item1,
                    PreferredWriteGranularity = b.Item2,
                    PreferredDeallocateGranularity = b.Item3,
                    AnaGroupId = b.Item4,
                    Attributes = b.Item5,
                    Nguid = b.Item6,
                    Eui64 = b.Item7,
                    LbaDataSizeExponent = b.Item8,
                })
            .Sample(ns =>
            {
                var page = new byte[IdentifyNamespace.Size];
                ns.Write(page);
                Assert.That(IdentifyNamespace.Read(page), Is.EqualTo(ns));
            }, iter: 2000);

    [Test]
    public void NamespaceIdDescriptorListRoundTrips() =>
        Gen.OneOf(
                Eight.Select(v => new NamespaceIdDescriptor(NamespaceIdType.Eui64, v)),
                Sixteen.Select(v => new NamespaceIdDescriptor(NamespaceIdType.Nguid, v)),
                Sixteen.Select(v => new NamespaceIdDescriptor(NamespaceIdType.Uuid, v)),
                Gen.Byte.Array[1].Select(v => new NamespaceIdDescriptor(NamespaceIdType.CommandSetIdentifier, v)))
            .Array[0, 8]
            .Sample(descriptors =>
            {
                var page = new byte[NamespaceIdDescriptor.ListSize];
                var used = NamespaceIdDescriptor.WriteList(page, descriptors);
                var read = NamespaceIdDescriptor.ReadList(page);

                Assert.That(used, Is.EqualTo(descriptors.Sum(x => 4 + x.Value.Length)));
                Assert.That(read.Select(x => x.Type), Is.EqualTo(descriptors.Select(x => x.Type)));
                Assert.That(read.Select(x => Convert.ToHexString(x.Value)), Is.EqualTo(descriptors.Select(x => Convert.ToHexString(x.Value))));
            });

    [Test]
    public void ActiveNamespaceListRoundTrips() =>
        Gen.Select(Gen.UInt[1, 5000].ArrayUnique[0, 1500], Gen.UInt[0, 5000])
            .Sample((nsids, greaterThan) =>
            {
                var page = new byte[ActiveNamespaceList.Size];
                ActiveNamespaceList.Write(page, nsids, greaterThan);
                var expected = nsids.Where(n => n > greaterThan).Order().Take(1024);
                Assert.That(ActiveNamespaceList.Read(page), Is.EqualTo(expected));
            }, iter: 300);

    private static readonly Gen<DiscoveryLogEntry> DiscoveryEntry =
        Gen.Select(
            Gen.Select(Gen.Enum<TransportType>(), Gen.Enum<AddressFamily>(), Gen.Enum<DiscoverySubsystemType>(), Gen.Byte, Gen.UShort, Gen.UShort, Gen.UShort, Gen.UShort),
            Gen.Select(Padded(32), Ascii(0, 223), Padded(256)),
            (a, b) => new DiscoveryLogEntry(a.Item1, a.Item2, a.Item3, a.Item4, a.Item5, a.Item6, a.Item7, a.Item8, b.Item1, b.Item2, b.Item3));

    [Test]
    public void DiscoveryLogRoundTrips() =>
        Gen.Select(Gen.ULong, DiscoveryEntry.Array[0, 6])
            .Sample((generation, entries) =>
            {
                var page = DiscoveryLog.Build(generation, entries);
                var (readGeneration, count, readEntries) = DiscoveryLog.Parse(page);

                Assert.That(page, Has.Length.EqualTo(1024 * (1 + entries.Length)));
                Assert.That(readGeneration, Is.EqualTo(generation));
                Assert.That(count, Is.EqualTo((ulong)entries.Length));
                Assert.That(readEntries, Is.EqualTo(entries));
            }, iter: 500);

    [Test]
    public void AnaLogRoundTrips() =>
        Gen.Select(
                Gen.ULong,
                Gen.Select(Gen.UInt[1, uint.MaxValue], Gen.ULong, Gen.Enum<AnaState>(), Gen.UInt[1, uint.MaxValue].ArrayUnique[0, 20],
                    (id, chg, state, nsids) => new AnaGroup(id, chg, state, nsids)).Array[0, 8],
                Gen.Bool)
            .Sample((changeCount, groups, groupsOnly) =>
            {
                var page = AnaLog.Build(changeCount, groups, groupsOnly);
                var (readChangeCount, readGroups) = AnaLog.Parse(page);

                Assert.That(page, Has.Length.EqualTo(16 + groups.Sum(g => 32 + (groupsOnly ? 0 : 4 * g.NamespaceIds.Count))));
                Assert.That(readChangeCount, Is.EqualTo(changeCount));
                Assert.That(readGroups.Select(g => (g.GroupId, g.ChangeCount, g.State)),
                    Is.EqualTo(groups.Select(g => (g.GroupId, g.ChangeCount, g.State))));
                for (var i = 0; i < groups.Length; i++)
                {
                    var expected = groupsOnly ? [] : groups[i].NamespaceIds.Order().ToArray();
                    Assert.That(readGroups[i].NamespaceIds, Is.EqualTo(expected), $"group {i} NSIDs, ascending");
                }
            }, iter: 500);

    [Test]
    public void SmartLogRoundTrips() =>
        Gen.Select(
                Gen.Select(Gen.Byte, Gen.UShort, Gen.Byte, Gen.Byte, Gen.Byte),
                Gen.ULong.Array[5],
                (a, counters) => new SmartLog(a.Item1, a.Item2, a.Item3, a.Item4, a.Item5, counters[0], counters[1], counters[2], counters[3], counters[4]))
            .Sample(log =>
            {
                var page = new byte[SmartLog.Size];
                log.Write(page);
                Assert.That(SmartLog.Read(page), Is.EqualTo(log));
            });

    [Test]
    public void Crc32CVerifiesItsOwnDigest() =>
        Gen.Byte.Array[0, 9000].Sample(data =>
        {
            var digest = new byte[4];
            Crc32C.ComputeInto(data, digest);
            Assert.That(Crc32C.Verify(data, digest), Is.True);
        }, iter: 200);
}
