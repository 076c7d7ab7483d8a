using System.Net;
using CsiNvme.Protocol.Commands;
using CsiNvme.Protocol.Logs;
using CsiNvme.Target.Transport;

namespace CsiNvme.Target.Controllers;

internal sealed partial class Controller
{
    private const int FirmwareSlotLogSize = 512;

    /// <summary>
    /// Get Log Page (NVMe base 2.0, 5.16): LID CDW10 7:0, LSP 14:8, RAE bit 15, NUMDL 31:16, NUMDU CDW11 15:0, LPO CDW12-13.
    /// Every log is built whole and served by offset and length, so hosts reading in chunks (libnvme does for
    /// the discovery log) see a consistent page.
    /// </summary>
    private void GetLogPage(NvmeTcpConnection connection, in SubmissionQueueEntry sqe)
    {
        var logId = (LogPageId)(byte)sqe.Cdw10;
        var logSpecific = (sqe.Cdw10 >> 8) & 0x7F;
        var retainEvent = (sqe.Cdw10 & 0x8000) != 0;
        var dwords = ((sqe.Cdw10 >> 16) | ((ulong)(sqe.Cdw11 & 0xFFFF) << 16)) + 1;
        var offset = sqe.Cdw12 | ((ulong)sqe.Cdw13 << 32);
        var length = dwords * 4;
        if ((offset & 3) != 0 || length > (ulong)connection.MaxDataTransfer)
        {
            connection.Complete(sqe.CommandId, NvmeStatus.InvalidField);
            return;
        }

        byte[]? page = logId switch
        {
            LogPageId.Discovery when IsDiscovery => BuildDiscoveryLog(connection),
            LogPageId.ErrorInformation => new byte[ErrorLog.EntrySize],
            LogPageId.SmartHealth => BuildSmartLog(),
            LogPageId.FirmwareSlot when !IsDiscovery => BuildFirmwareSlotLog(),
            LogPageId.ChangedNamespaceList when !IsDiscovery => BuildChangedNamespaceLog(retainEvent),
            LogPageId.AsymmetricNamespaceAccess when !IsDiscovery => BuildAnaLog(groupsOnly: (logSpecific & 1) != 0, retainEvent),
            LogPageId.ReservationNotification when !IsDiscovery => BuildReservationNotificationLog(retainEvent),
            _ => null,
        };

        if (page is null)
        {
            connection.Complete(sqe.CommandId, NvmeStatus.InvalidLogPage);
            return;
        }

        if (offset > (ulong)page.Length)
        {
            connection.Complete(sqe.CommandId, NvmeStatus.InvalidField);
            return;
        }

        SendAdminData(connection, sqe, page.AsSpan((int)offset), length);
    }

    /// <summary>
    /// One entry per NVM subsystem this host may connect to, per listener (NVMe-oF 1.1, 5.3). A wildcard listener is
    /// reported with the address the host reached us on, which is the one it can connect to.
    /// </summary>
    private byte[] BuildDiscoveryLog(NvmeTcpConnection connection)
    {
        var entries = new List<DiscoveryLogEntry>();
        var endpoints = _target.LocalEndpoints;
        foreach (var subsystem in _target.Subsystems.OrderBy(s => s.Nqn, StringComparer.Ordinal))
        {
            if (!MayDiscover(subsystem))
            {
                continue;
            }

            for (var i = 0; i < endpoints.Count; i++)
            {
                var endpoint = endpoints[i];
                var address = endpoint.Address;
                if (address.Equals(IPAddress.Any) || address.Equals(IPAddress.IPv6Any))
                {
                    address = connection.LocalEndPoint?.Address ?? address;
                }

                if (address.IsIPv4MappedToIPv6)
                {
                    address = address.MapToIPv4();
                }

                entries.Add(Entry(subsystem.Nqn, subsystem.TlsRequired, address, endpoint.Port, (ushort)(_target.Options.PortIdBase + i)));
            }

            foreach (var peer in subsystem.PeerPorts)
            {
                entries.Add(Entry(subsystem.Nqn, subsystem.TlsRequired, peer.Endpoint.Address, peer.Endpoint.Port, peer.PortId));
            }
        }

        return DiscoveryLog.Build(_target.DiscoveryGeneration, entries);
    }

    /// <summary>
    /// A subsystem that takes only TLS connections says so (TREQ secure channel required, SECTYPE TLS 1.3), which is
    /// what makes <c>nvme connect-all</c> use TLS; the others say no secure channel is required.
    /// </summary>
    private DiscoveryLogEntry Entry(string subsystemNqn, bool tlsRequired, IPAddress address, int port, ushort portId) => new(
        TransportType.Tcp,
        address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? Protocol.Logs.AddressFamily.IPv6 : Protocol.Logs.AddressFamily.IPv4,
        DiscoverySubsystemType.NvmSubsystem,
        tlsRequired ? DiscoveryLogEntry.SecureChannelRequired : DiscoveryLogEntry.SecureChannelNotRequired,
        portId,
        0xFFFF,
        (ushort)_target.Options.MaxQueueEntries,
        0,
        port.ToString(System.Globalization.CultureInfo.InvariantCulture),
        subsystemNqn,
        address.ToString(),
        tlsRequired ? DiscoveryLogEntry.SecurityTypeTls13 : (byte)0);

    private byte[] BuildSmartLog()
    {
        ulong readCommands = 0, writeCommands = 0, bytesRead = 0, bytesWritten = 0;
        foreach (var ns in Subsystem.Namespaces)
        {
            var counters = ns.Counters;
            readCommands += (ulong)counters.ReadCommands;
            writeCommands += (ulong)counters.WriteCommands;
            bytesRead += (ulong)counters.BytesRead;
            bytesWritten += (ulong)counters.BytesWritten;
        }

        var page = new byte[SmartLog.Size];
        // Data units are thousands of 512-byte units, rounded up (NVMe base 2.0, Figure 207).
        new SmartLog(
            CriticalWarning: 0,
            CompositeTemperatureKelvin: 300,
            AvailableSpare: 100,
            AvailableSpareThreshold: 10,
            PercentageUsed: 0,
            DataUnitsRead: (bytesRead / 512 + 999) / 1000,
            DataUnitsWritten: (bytesWritten / 512 + 999) / 1000,
            HostReadCommands: readCommands,
            HostWriteCommands: writeCommands,
            PowerOnHours: (ulong)(DateTime.UtcNow - _target.StartedAt).TotalHours).Write(page);
        return page;
    }

    private byte[] BuildFirmwareSlotLog()
    {
        // AFI@0: slot 1 active; FRS1@8: the firmware revision (NVMe base 2.0, Figure 208).
        var page = new byte[FirmwareSlotLogSize];
        page[0] = 0x01;
        Protocol.AsciiField.WriteSpacePadded(page.AsSpan(8, 8), _target.Options.FirmwareRevision);
        return page;
    }

    private byte[] BuildChangedNamespaceLog(bool retainEvent)
    {
        var page = new byte[ChangedNamespaceList.Size];
        ChangedNamespaceList.Write(page, TakeChangedNamespaces(retainEvent));
        return page;
    }

    /// <summary>
    /// The ANA log of this path: the subsystem's one group (this node's) with its state and every namespace. The change
    /// count of the log and of the group is the subsystem's count of state changes.
    /// </summary>
    private byte[] BuildAnaLog(bool groupsOnly, bool retainEvent)
    {
        AnaLogRead(retainEvent);
        var subsystem = Subsystem;
        var changeCount = subsystem.AnaChangeCount;
        var group = new AnaGroup(subsystem.AnaGroupId, changeCount, subsystem.AnaState, subsystem.Namespaces.Select(ns => ns.NamespaceId).ToArray());
        return AnaLog.Build(changeCount, [group], groupsOnly);
    }
}
