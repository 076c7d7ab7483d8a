namespace CsiNvme.Protocol.Commands;

/// <summary>Admin command opcodes (NVMe base 2.0, 5, Figure 138).</summary>
public enum AdminOpcode : byte
{
    DeleteIoSq = 0x00,
    CreateIoSq = 0x01,
    GetLogPage = 0x02,
    DeleteIoCq = 0x04,
    CreateIoCq = 0x05,
    Identify = 0x06,
    Abort = 0x08,
    SetFeatures = 0x09,
    GetFeatures = 0x0A,
    AsyncEventRequest = 0x0C,
    KeepAlive = 0x18,
    /// <summary>All NVMe-oF Fabrics commands share opcode 7Fh; FCTYPE selects the command (NVMe-oF 1.1, 6).</summary>
    Fabrics = 0x7F,
}

/// <summary>NVM command set I/O opcodes (NVM command set 1.0, 3, Figure 15).</summary>
public enum IoOpcode : byte
{
    Flush = 0x00,
    Write = 0x01,
    Read = 0x02,
    WriteUncorrectable = 0x04,
    Compare = 0x05,
    WriteZeroes = 0x08,
    DatasetManagement = 0x09,
    ReservationRegister = 0x0D,
    ReservationReport = 0x0E,
    ReservationAcquire = 0x11,
    ReservationRelease = 0x15,
    Fabrics = 0x7F,
}

/// <summary>Fabrics command types, SQE byte 4 (NVMe-oF 1.1, 6, Figure 13).</summary>
public enum FabricsCommandType : byte
{
    PropertySet = 0x00,
    Connect = 0x01,
    PropertyGet = 0x04,
    AuthenticationSend = 0x05,
    AuthenticationReceive = 0x06,
    Disconnect = 0x08,
}

/// <summary>Identify CNS values (NVMe base 2.0, 5.17, Figure 273).</summary>
public enum IdentifyCns : byte
{
    Namespace = 0x00,
    Controller = 0x01,
    ActiveNamespaceList = 0x02,
    NamespaceIdDescriptorList = 0x03,
}

/// <summary>Log page identifiers (NVMe base 2.0, 5.16, Figure 202; NVMe-oF 1.1 for 70h).</summary>
public enum LogPageId : byte
{
    ErrorInformation = 0x01,
    SmartHealth = 0x02,
    FirmwareSlot = 0x03,
    ChangedNamespaceList = 0x04,
    CommandsSupportedAndEffects = 0x05,
    AsymmetricNamespaceAccess = 0x0C,
    Discovery = 0x70,
    /// <summary>Reservation Notification (NVMe base 2.0, 5.16.1.25): one notification per read, oldest first.</summary>
    ReservationNotification = 0x80,
}

/// <summary>Feature identifiers (NVMe base 2.0, 5.27.1, Figure 319).</summary>
public enum FeatureId : byte
{
    Arbitration = 0x01,
    PowerManagement = 0x02,
    TemperatureThreshold = 0x04,
    VolatileWriteCache = 0x06,
    NumberOfQueues = 0x07,
    InterruptCoalescing = 0x08,
    AsyncEventConfiguration = 0x0B,
    KeepAliveTimer = 0x0F,
    HostIdentifier = 0x81,
    /// <summary>Reservation Notification Mask (NVM command set 1.0, 4.1.3.3): namespace specific, per controller.</summary>
    ReservationNotificationMask = 0x82,
    /// <summary>Reservation Persistence (NVM command set 1.0, 4.1.3.4): the namespace's Persist Through Power Loss state.</summary>
    ReservationPersistence = 0x83,

    /// <summary>
    /// Vendor specific (FIDs C0h–FFh, NVMe base 2.0, Figure 325): the replication epoch of the controller's host. A
    /// storage node's replica subsystem accepts changes only from a controller that set an epoch at least as high as the
    /// highest it has seen; a higher one fences every controller of a lower epoch (an old primary). CDW11 = epoch.
    /// </summary>
    ReplicationEpoch = 0xC0,
}
