# create_vm: creates (does not start) a generation 1 (BIOS) or 2 (UEFI) VM
# with static memory; disk 0 cloned from a template VHDX (differencing or
# copy) or blank, the other disks blank, each "<VMId>-disk<N>.vhdx"; NICs with
# the given MACs; network boot first. What it made is removed if a step fails.
# Parameters ($p): {name, gen, cpus, memory, vm_path, vhd_path, template_dir,
#   template, clone, secure_boot, nics: [{switch, mac}], disks: [{size, dir}]}
# Returns: the VM, {id, name, state, cpus, memory, host, gen, ha, macs}
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
[Console]::OutputEncoding = [Text.Encoding]::UTF8
trap { $m = "$($_.Exception.Message)"; if ($m -notlike 'PUREBOOT|*') { $m = 'PUREBOOT|{0}|{1}' -f $_.CategoryInfo.Category, $m }; throw $m }
function V($v) {
  [ordered]@{id = "$($v.VMId)"; name = $v.Name; state = "$($v.State)"; cpus = $v.ProcessorCount
    memory = $v.MemoryStartup; host = $v.ComputerName; gen = $v.Generation; ha = $v.IsClustered
    macs = @($v.NetworkAdapters | ForEach-Object MacAddress)}
}
$src = ''
if ($p.template) {
  $src = Join-Path $p.template_dir $p.template
  if (-not (Test-Path -LiteralPath $src -PathType Leaf)) {
    throw "PUREBOOT|NotFound|no template $($p.template) in $($p.template_dir)"
  }
}
$vhd = if ($p.vhd_path) { $p.vhd_path } else { (Get-VMHost).VirtualHardDiskPath }
$a = @{Name = $p.name; Generation = $p.gen; MemoryStartupBytes = $p.memory; NoVHD = $true}
if ($p.vm_path) { $a.Path = $p.vm_path }
$vm = $null
$made = @()
try {
  $vm = New-VM @a
  Set-VMProcessor -VM $vm -Count $p.cpus
  Set-VMMemory -VM $vm -DynamicMemoryEnabled $false -StartupBytes $p.memory
  Get-VMNetworkAdapter -VM $vm | Remove-VMNetworkAdapter
  $ctl = if ($p.gen -eq 1) { 'IDE' } else { 'SCSI' }
  $i = 0
  foreach ($d in $p.disks) {
    $f = Join-Path $(if ($d.dir) { $d.dir } else { $vhd }) "$($vm.VMId)-disk$i.vhdx"
    if ($i -eq 0 -and $src) {
      if ($p.clone -eq 'copy') { Copy-Item -LiteralPath $src -Destination $f }
      else { New-VHD -Path $f -ParentPath $src -Differencing | Out-Null }
    } else { New-VHD -Path $f -SizeBytes $d.size -Dynamic | Out-Null }
    $made += $f
    Add-VMHardDiskDrive -VM $vm -ControllerType $ctl -Path $f
    $i++
  }
  $first = $null
  foreach ($n in $p.nics) {
    # Generation 1 VMs network-boot only from a legacy adapter.
    $legacy = $p.gen -eq 1 -and -not $first
    $nic = Add-VMNetworkAdapter -VM $vm -SwitchName $n.switch -StaticMacAddress $n.mac `
      -IsLegacy $legacy -Passthru
    if (-not $first) { $first = $nic }
  }
  if ($p.gen -eq 2) {
    Set-VMFirmware -VM $vm -EnableSecureBoot $p.secure_boot -FirstBootDevice $first
  } else {
    Set-VMBios -VM $vm -StartupOrder @('LegacyNetworkAdapter', 'IDE', 'CD', 'Floppy')
  }
} catch {
  $e = $_
  try {
    if ($vm) { Remove-VM -VM $vm -Force }
    foreach ($f in $made) { Remove-Item -LiteralPath $f -Force }
  } catch {
    throw "PUREBOOT|Leftover|$($e.Exception.Message); cleaning up failed too ($($_.Exception.Message)): VM $($vm.VMId) and disks $($made -join ', ') may be left"
  }
  throw $e
}
ConvertTo-Json -Compress -Depth 5 -InputObject (V (Get-VM -Id $vm.VMId))
