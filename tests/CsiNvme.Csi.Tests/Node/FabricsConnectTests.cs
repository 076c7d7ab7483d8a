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
