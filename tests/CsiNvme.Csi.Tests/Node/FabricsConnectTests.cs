using CsCheck;
using CsiNvme.Csi.Node;
using NUnit.Framework;

namespace CsiNvme.Csi.Tests.Node;

[TestFixture]
public sealed class FabricsConnectTests
{
    private const string Nqn = "nqn.2026-11.io.csinvme:volume:1";
    private const string Host = "nqn.2026-11.io.csinvme:node:n1";
    private static readonly Guid _hostId = Guid.Parse("285b432b-9a56-8d9e-aa2f-4650f9f46ad7");

    [Test]
    public void Defaults_are_the_documented_ones_leave_queues_to_the_kernel_and_disable_sq_flow_control()
    {
        var settings = FabricsConnectSettings.FromVolumeContext(new Dictionary<string, string> { ["nqn"] = Nqn, ["uuid"] = "x" });

        Assert.That(settings.BuildConnectString(new FabricsTarget("10.0.2.2", 4420), Nqn, Host, _hostId), Is.EqualTo(
            "transport=tcp,traddr=10.0.2.2,trsvcid=4420,nqn=nqn.2026-11.io.csinvme:volume:1," +
            "hostnqn=nqn.2026-11.io.csinvme:node:n1,hostid=285b432b-9a56-8d9e-aa2f-4650f9f46ad7," +
            "ctrl_loss_tmo=600,reconnect_delay=10,fast_io_fail_tmo=15,keep_alive_tmo=5,disable_sqflow"));
    }

    [Test]
    public void Storage_class_parameters_become_kernel_options()
    {
        var settings = FabricsConnectSettings.FromVolumeContext(new Dictionary<string, string>
        {
            ["ctrlLossTmo"] = "-1",
            ["reconnectDelay"] = "2",
            ["fastIoFailTmo"] = "-1",
            ["keepAliveTmo"] = "30",
            ["nrIoQueues"] = "4",
            ["headerDigest"] = "TRUE",
            ["dataDigest"] = "true",
            ["disableSqFlow"] = "false",
        });

        Assert.That(settings.BuildConnectString(new FabricsTarget("fd00::2", 4421), Nqn, Host, _hostId), Is.EqualTo(
            "transport=tcp,traddr=fd00::2,trsvcid=4421,nqn=nqn.2026-11.io.csinvme:volume:1," +
            "hostnqn=nqn.2026-11.io.csinvme:node:n1,hostid=285b432b-9a56-8d9e-aa2f-4650f9f46ad7," +
            "ctrl_loss_tmo=-1,reconnect_delay=2,fast_io_fail_tmo=-1,keep_alive_tmo=30,nr_io_queues=4,hdr_digest,data_digest"));
    }

    [Test]
    public void Node_defaults_fill_the_keys_the_volume_context_lacks_and_the_context_wins()
    {
        var node = FabricsConnectSettings.FromNodeFlags(new Dictionary<string, string>
        {
            ["ctrlLossTmo"] = "-1",
            ["keepAliveTmo"] = "30",
            ["nrIoQueues"] = "2",
            ["dataDigest"] = "true",
            ["disableSqFlow"] = "false",
        }).SinglePath;
        var settings = FabricsConnectSettings.FromVolumeContext(
            new Dictionary<string, string> { ["keepAliveTmo"] = "7", ["disableSqFlow"] = "true", ["fastIoFailTmo"] = "" },
            node);

        Assert.Multiple(() =>
        {
            Assert.That(node, Is.EqualTo(FabricsConnectSettings.Default with
            {
                CtrlLossTmo = -1,
                KeepAliveTmo = 30,
                NrIoQueues = 2,
                DataDigest = true,
                DisableSqFlow = false,
            }));
            Assert.That(settings.BuildConnectString(new FabricsTarget("10.0.2.2", 4420), Nqn, Host, _hostId), Is.EqualTo(
                "transport=tcp,traddr=10.0.2.2,trsvcid=4420,nqn=nqn.2026-11.io.csinvme:volume:1," +
                "hostnqn=nqn.2026-11.io.csinvme:node:n1,hostid=285b432b-9a56-8d9e-aa2f-4650f9f46ad7," +
                "ctrl_loss_tmo=-1,reconnect_delay=10,fast_io_fail_tmo=15,keep_alive_tmo=7,nr_io_queues=2,data_digest,disable_sqflow"));
        });
    }

    [Test]
    public void Without_node_flags_the_defaults_are_the_documented_ones()
    {
        var defaults = FabricsConnectSettings.FromNodeFlags(new Dictionary<string, string>());
        Assert.Multiple(() =>
        {
            Assert.That(defaults, Is.EqualTo(FabricsConnectDefaults.Default));
            Assert.That(defaults.For(1), Is.EqualTo(FabricsConnectSettings.Default));
            Assert.That(defaults.For(2), Is.EqualTo(FabricsConnectSettings.Default with { CtrlLossTmo = 60, ReconnectDelay = 5, FastIoFailTmo = -1 }));
            Assert.That(defaults.For(3), Is.SameAs(defaults.Multipath));
        });
    }

    [TestCase("ctrlLossTmo", "-2", "--ctrl-loss-tmo")]
    [TestCase("reconnectDelay", "0", "--reconnect-delay")]
    [TestCase("keepAliveTmo", "65536", "--keep-alive-tmo")]
    [TestCase("nrIoQueues", "four", "--nr-io-queues")]
    [TestCase("headerDigest", "yes", "--header-digest")]
    [TestCase("disableSqFlow", "1", "--disable-sq-flow")]
    public void Bad_node_flags_are_refused_naming_the_flag(string key, string value, string flag) =>
        Assert.That(() => FabricsConnectSettings.FromNodeFlags(new Dictionary<string, string> { [key] = value }),
            Throws.InstanceOf<FormatException>().With.Message.StartsWith(flag + "="));

    [TestCase("ctrlLossTmo", "-2", "--multipath-ctrl-loss-tmo")]
    [TestCase("reconnectDelay", "0", "--multipath-reconnect-delay")]
    [TestCase("fastIoFailTmo", "soon", "--multipath-fast-io-fail-tmo")]
    public void Bad_multipath_flags_are_refused_naming_the_flag(string key, string value, string flag) =>
        Assert.That(() => FabricsConnectSettings.FromNodeFlags(new Dictionary<string, string>(), new Dictionary<string, string> { [key] = value }),
            Throws.InstanceOf<FormatException>().With.Message.StartsWith(flag + "="));

    [Test]
    public void Every_parameter_has_a_flag_and_every_connect_option_a_parameter()
    {
        // A key the node reads but cannot default from a flag would bring back the immutable StorageClass parameters.
        var context = FabricsConnectSettings.Parameters.ToDictionary(p => p.Key, p => p.HelpName == "true|false" ? "true" : "3");
        var fromContext = FabricsConnectSettings.FromVolumeContext(context);
        var fromFlags = FabricsConnectSettings.FromNodeFlags(context).SinglePath;
        Assert.Multiple(() =>
        {
            Assert.That(FabricsConnectSettings.Parameters.Concat(FabricsConnectSettings.MultipathParameters).Select(p => p.Flag), Is.Unique.And.All.StartsWith("--"));
            Assert.That(FabricsConnectSettings.MultipathParameters.Select(p => p.Key), Is.SubsetOf(FabricsConnectSettings.Parameters.Select(p => p.Key)));
            Assert.That(fromFlags, Is.EqualTo(fromContext));
            Assert.That(fromContext, Is.EqualTo(new FabricsConnectSettings
            {
                CtrlLossTmo = 3, ReconnectDelay = 3, FastIoFailTmo = 3, KeepAliveTmo = 3, NrIoQueues = 3,
                HeaderDigest = true, DataDigest = true, DisableSqFlow = true,
            }));
        });
    }

    [TestCase("ctrlLossTmo", "-2")]
    [TestCase("reconnectDelay", "0")]
    [TestCase("keepAliveTmo", "65536")]
    [TestCase("nrIoQueues", "four")]
    [TestCase("headerDigest", "yes")]
    [TestCase("disableSqFlow", "1")]
    public void Bad_parameters_are_refused_naming_the_key(string key, string value) =>
        Assert.That(() => FabricsConnectSettings.FromVolumeContext(new Dictionary<string, string> { [key] = value }),
            Throws.InstanceOf<FormatException>().With.Message.Contains(key));

    [Test]
    public void Target_lists_parse_ipv4_and_bracketed_ipv6_and_drop_duplicates()
    {
        Assert.That(FabricsTarget.ParseList(" 10.0.2.2:4420,[fd00::2]:4421,10.0.2.2:4420 "), Is.EqualTo(new[]
        {
            new FabricsTarget("10.0.2.2", 4420),
            new FabricsTarget("fd00::2", 4421),
        }));
    }

    [TestCase("")]
    [TestCase("10.0.2.2")]
    [TestCase("10.0.2.2:0")]
    [TestCase("storage.example:4420")]
    [TestCase("10.0.2.2:4420,nope")]
    public void Bad_target_lists_are_refused(string text) =>
        Assert.That(() => FabricsTarget.ParseList(text), Throws.InstanceOf<FormatException>());

    [Test]
    public void Every_target_written_as_a_list_entry_parses_back_to_itself() =>
        Gen.Select(Gen.Byte.Array[4], Gen.Int[1, 65535]).Sample((bytes, port) =>
        {
            var target = new FabricsTarget(new System.Net.IPAddress(bytes).ToString(), port);
            return FabricsTarget.ParseList(target.ToString()).Single() == target;
        });

    [Test]
    public void Node_identity_is_the_host_nqn_with_a_stable_rfc_uuid_host_id()
    {
        var identity = NodeIdentity.FromNodeName("worker-1");
        var again = NodeIdentity.FromNodeName("worker-1");
        var other = NodeIdentity.FromNodeName("worker-2");
        var text = identity.HostId.ToString("D");

        Assert.Multiple(() =>
        {
            Assert.That(identity.NodeId, Is.EqualTo("nqn.2026-11.io.csinvme:node:worker-1"));
            Assert.That(identity.HostNqn, Is.EqualTo(identity.NodeId));
            Assert.That(again.HostId, Is.EqualTo(identity.HostId));
            Assert.That(other.HostId, Is.Not.EqualTo(identity.HostId));
            Assert.That(text[14], Is.EqualTo('8'), "version nibble");
            Assert.That(text[19], Is.AnyOf('8', '9', 'a', 'b'), "RFC variant");
            Assert.That(NodeIdentity.FromNodeName("worker-1", "nqn.2014-08.org.nvmexpress:uuid:abc").HostNqn,
                Is.EqualTo("nqn.2014-08.org.nvmexpress:uuid:abc"));
        });
    }
}
